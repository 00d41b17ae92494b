//! Generated visual question answering on shape scenes, where the answer depends on the
//! question picking out a region: two or three objects of distinct colours and distinct shapes
//! on a 3×3 layout, and one question per scene:
//!
//! - "what colour is the triangle ?" (a colour),
//! - "what shape is the red thing ?" (a shape),
//! - "is the circle left of the square ?" / "is the circle above the square ?" (yes / no; the
//!   two objects never share the column, or the row, that the question compares).
//!
//! Colour–shape pairs can be held out of training ([`crate::data::shape_scenes::HELD_OUT`]):
//! "seen" sets contain none of them; in "unseen" sets the object the question is about (one of
//! the two, for relations) is always a held-out pair, so answering needs the question's word to
//! select the object by one attribute and read off the other in a combination never trained on.
use super::shape_scenes::{grey_noise, paint, COLORS, SHAPES};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a question asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuestionKind {
    Colour,
    Shape,
    LeftOf,
    Above,
}

impl QuestionKind {
    pub const ALL: [QuestionKind; 4] = [
        QuestionKind::Colour,
        QuestionKind::Shape,
        QuestionKind::LeftOf,
        QuestionKind::Above,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::Colour => "colour",
            QuestionKind::Shape => "shape",
            QuestionKind::LeftOf => "left of",
            QuestionKind::Above => "above",
        }
    }
}

/// The answer vocabulary: the colours, the shapes, "yes", "no".
pub fn answers() -> Vec<&'static str> {
    let mut a: Vec<&str> = COLORS.iter().map(|(c, _)| *c).collect();
    a.extend(SHAPES);
    a.extend(["yes", "no"]);
    a
}

/// Every word a question can use (the question vocabulary after the special tokens).
pub fn question_words() -> Vec<&'static str> {
    let mut w = vec![
        "what", "colour", "shape", "is", "the", "thing", "left", "of", "above", "?",
    ];
    w.extend(COLORS.iter().map(|(c, _)| *c));
    w.extend(SHAPES);
    w
}

/// One object: indices into [`COLORS`] and [`SHAPES`], its centre in pixels and its pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct VqaObject {
    pub color: usize,
    pub shape: usize,
    /// Cell of the 3×3 layout (column, row).
    pub cell: (usize, usize),
    pub centre: (f32, f32),
    /// `size`×`size`, row-major.
    pub mask: Vec<bool>,
}

/// One scene with its question.
#[derive(Clone, Debug)]
pub struct VqaSample {
    /// HWC RGB, `size`×`size`.
    pub rgb: Vec<u8>,
    pub size: usize,
    pub objects: Vec<VqaObject>,
    pub kind: QuestionKind,
    /// The question's words (from [`question_words`]).
    pub question: Vec<&'static str>,
    /// Index into [`answers`].
    pub answer: usize,
    /// The objects the question names: the one asked about, then (relations) the reference.
    pub about: Vec<usize>,
}

impl VqaSample {
    /// The question as text.
    pub fn question_text(&self) -> String {
        self.question.join(" ")
    }

    /// Whether patch (`row`, `col`) of a `grid`×`grid` patching touches object `k`.
    pub fn patch_on(&self, k: usize, grid: usize, row: usize, col: usize) -> bool {
        let p = self.size / grid;
        let mask = &self.objects[k].mask;
        (row * p..(row + 1) * p).any(|y| (col * p..(col + 1) * p).any(|x| mask[y * self.size + x]))
    }
}

/// The answer index of a word.
fn answer_of(word: &str) -> usize {
    answers()
        .iter()
        .position(|a| *a == word)
        .expect("answers cover every colour, shape, yes and no")
}

/// Draws the objects (colour, shape) in distinct cells of a 3×3 layout, with jitter, over
/// grey noise.
fn render(
    size: usize,
    pairs: &[(usize, usize)],
    rng: &mut ChaCha8Rng,
) -> (Vec<u8>, Vec<VqaObject>) {
    let cell = size as f32 / 3.0;
    let mut rgb = grey_noise(size, rng);
    let mut cells: Vec<usize> = (0..9).collect();
    cells.shuffle(rng);
    let objects = pairs
        .iter()
        .zip(cells)
        .map(|(&(color, shape), c)| {
            let (col, row) = (c % 3, c / 3);
            let r = cell * 0.38 * rng.random_range(0.8..1.0);
            let cx = cell * (col as f32 + 0.5) + rng.random_range(-0.08..0.08) * cell;
            let cy = cell * (row as f32 + 0.5) + rng.random_range(-0.08..0.08) * cell;
            let mask = paint(&mut rgb, size, shape, COLORS[color].1, (cx, cy), r, rng);
            VqaObject {
                color,
                shape,
                cell: (col, row),
                centre: (cx, cy),
                mask,
            }
        })
        .collect();
    (rgb, objects)
}

/// `n` samples of `size`×`size` scenes. `held` lists held-out (colour, shape) pairs: with
/// `unseen` false no object is one; with `unseen` true the object each question is about is one
/// (its other objects are seen pairs). Question kinds are drawn uniformly; a relation that the
/// layout cannot ask (every pair shares a column, or a row) is redrawn.
pub fn samples(
    n: usize,
    size: usize,
    held: &[(usize, usize)],
    unseen: bool,
    seed: u64,
) -> Vec<VqaSample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let is_held = |p: (usize, usize)| held.contains(&p);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = rng.random_range(2..=3);
        // Distinct colours and distinct shapes, so "the triangle" and "the red thing" name one
        // object.
        let mut colors: Vec<usize> = (0..COLORS.len()).collect();
        let mut shapes: Vec<usize> = (0..SHAPES.len()).collect();
        colors.shuffle(&mut rng);
        shapes.shuffle(&mut rng);
        let mut pairs: Vec<(usize, usize)> = (0..k).map(|i| (colors[i], shapes[i])).collect();
        if unseen {
            // Object 0 becomes a held-out pair whose colour and shape no other object has.
            let free: Vec<&(usize, usize)> = held
                .iter()
                .filter(|(c, s)| pairs[1..].iter().all(|p| p.0 != *c && p.1 != *s))
                .collect();
            match free.choose(&mut rng) {
                Some(&&p) => pairs[0] = p,
                None => continue,
            }
            if pairs[1..].iter().any(|&p| is_held(p)) {
                continue;
            }
        } else if pairs.iter().any(|&p| is_held(p)) {
            continue;
        }
        let (rgb, objects) = render(size, &pairs, &mut rng);
        let kind = QuestionKind::ALL[rng.random_range(0..4)];
        // The object asked about: 0 in unseen sets (the held-out one), else any.
        let a = if unseen { 0 } else { rng.random_range(0..k) };
        let (question, answer, about) = match kind {
            QuestionKind::Colour => (
                vec!["what", "colour", "is", "the", SHAPES[pairs[a].1], "?"],
                answer_of(COLORS[pairs[a].0].0),
                vec![a],
            ),
            QuestionKind::Shape => (
                vec![
                    "what",
                    "shape",
                    "is",
                    "the",
                    COLORS[pairs[a].0].0,
                    "thing",
                    "?",
                ],
                answer_of(SHAPES[pairs[a].1]),
                vec![a],
            ),
            QuestionKind::LeftOf | QuestionKind::Above => {
                let axis = |o: &VqaObject| match kind {
                    QuestionKind::LeftOf => o.cell.0,
                    _ => o.cell.1,
                };
                let others: Vec<usize> = (0..k)
                    .filter(|&b| b != a && axis(&objects[b]) != axis(&objects[a]))
                    .collect();
                let Some(&b) = others.choose(&mut rng) else {
                    continue;
                };
                let yes = axis(&objects[a]) < axis(&objects[b]);
                let rel: &[&'static str] = match kind {
                    QuestionKind::LeftOf => &["left", "of"],
                    _ => &["above"],
                };
                let mut q = vec!["is", "the", SHAPES[pairs[a].1]];
                q.extend(rel);
                q.extend(["the", SHAPES[pairs[b].1], "?"]);
                (q, answer_of(if yes { "yes" } else { "no" }), vec![a, b])
            }
        };
        out.push(VqaSample {
            rgb,
            size,
            objects,
            kind,
            question,
            answer,
            about,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shape_scenes::HELD_OUT;

    #[test]
    fn answers_follow_from_the_scene() {
        let ans = answers();
        for unseen in [false, true] {
            let s = samples(400, 48, &HELD_OUT, unseen, 5);
            for x in &s {
                let o = &x.objects[x.about[0]];
                let held = HELD_OUT.contains(&(o.color, o.shape));
                assert_eq!(held, unseen, "{}", x.question_text());
                if !unseen {
                    assert!(x
                        .objects
                        .iter()
                        .all(|o| !HELD_OUT.contains(&(o.color, o.shape))));
                }
                // Colours and shapes are unique within a scene.
                for (i, p) in x.objects.iter().enumerate() {
                    for q in &x.objects[i + 1..] {
                        assert!(p.color != q.color && p.shape != q.shape);
                    }
                }
                let want = match x.kind {
                    QuestionKind::Colour => COLORS[o.color].0,
                    QuestionKind::Shape => SHAPES[o.shape],
                    QuestionKind::LeftOf | QuestionKind::Above => {
                        let r = &x.objects[x.about[1]];
                        let (a, b) = match x.kind {
                            QuestionKind::LeftOf => (o.centre.0, r.centre.0),
                            _ => (o.centre.1, r.centre.1),
                        };
                        if a < b {
                            "yes"
                        } else {
                            "no"
                        }
                    }
                };
                assert_eq!(ans[x.answer], want, "{}", x.question_text());
                assert!(x.question.iter().all(|w| question_words().contains(w)));
            }
            for kind in QuestionKind::ALL {
                let c = s.iter().filter(|x| x.kind == kind).count();
                assert!(c > 60, "{kind:?}: {c} of 400");
            }
            let yes = s.iter().filter(|x| ans[x.answer] == "yes").count();
            let rel = s.iter().filter(|x| x.about.len() == 2).count();
            assert!(
                yes * 10 > rel * 3 && yes * 10 < rel * 7,
                "{yes} yes of {rel}"
            );
        }
    }
}
