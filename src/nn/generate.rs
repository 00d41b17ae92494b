//! The one generation loop of every decoder, as transformers' `generate` does it: greedy,
//! multinomial sampling (temperature, top-k, top-p; seeded) and beam search (length penalty,
//! early stopping `true`/`false`/`"never"`, several returned sequences), with the repetition
//! penalty, `min_new_tokens`, `max_new_tokens`/`max_length`, eos and pad handling, and batched
//! prompts of different lengths (left padded, positions from the attention mask).
//!
//! A model takes part through [`Decoder`]: one incremental forward over the new tokens (its own
//! KV cache) and a row selection (beam search's expansion and reorder). Token bookkeeping,
//! masks and positions live here once.
use candle_core::{DType, Device, Result, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A decoder in the middle of a generation: it keeps its own caches.
pub trait Decoder {
    /// Logits [R, V] at the last of the new tokens `ids` [R, N] (u32), at `positions` [R, N]
    /// (u32); `mask` is additive over every position seen so far, [R, 1, N, T] (causal and
    /// padding). Appends the new keys and values to the caches.
    fn step(&mut self, ids: &Tensor, positions: &Tensor, mask: &Tensor) -> Result<Tensor>;

    /// Keeps rows `rows` (u32, one per new row; repeats allowed) of every per-row state: caches and the
    /// encoder states attended to.
    fn select_rows(&mut self, rows: &Tensor) -> Result<()>;
}

/// `early_stopping` of transformers' `GenerationConfig`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `False`: stop when the best running beam cannot beat the worst finished one at the
    /// current length (transformers' heuristic).
    #[default]
    Heuristic,
    /// `True`: stop a batch row as soon as `num_beams` hypotheses are finished.
    Yes,
    /// `"never"`: only when no better hypothesis is possible (at `max_length` for a positive
    /// length penalty).
    Never,
}

/// Sampling settings (`do_sample=True`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    /// 0: off.
    pub top_k: usize,
    /// 1.0: off.
    pub top_p: f32,
    pub seed: u64,
}

/// `GenerationConfig`'s decoding settings, with transformers' defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// New tokens at most; when `None`, `max_length` bounds prompt + new tokens.
    pub max_new_tokens: Option<usize>,
    pub max_length: usize,
    pub min_new_tokens: usize,
    pub num_beams: usize,
    pub num_return_sequences: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    /// 1.0: off.
    pub repetition_penalty: f32,
    pub sampling: Option<Sampling>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: None,
            max_length: 20,
            min_new_tokens: 0,
            num_beams: 1,
            num_return_sequences: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            repetition_penalty: 1.0,
            sampling: None,
            eos_token_id: None,
            pad_token_id: None,
        }
    }
}

impl GenerationConfig {
    /// Settings that cannot run, as one-line errors.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.num_beams == 0 {
            return bad("num_beams must be at least 1".into());
        }
        if self.num_return_sequences == 0 || self.num_return_sequences > self.num_beams {
            return bad(format!(
                "num_return_sequences {} must be between 1 and num_beams {}",
                self.num_return_sequences, self.num_beams
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty {} must be a positive number",
                self.repetition_penalty
            ));
        }
        if !self.length_penalty.is_finite() {
            return bad(format!(
                "length_penalty {} must be finite",
                self.length_penalty
            ));
        }
        if let Some(s) = &self.sampling {
            if !(s.temperature.is_finite() && s.temperature > 0.0) {
                return bad(format!(
                    "temperature {} must be a positive number",
                    s.temperature
                ));
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return bad(format!("top_p {} must be in (0, 1]", s.top_p));
            }
            if self.num_beams > 1 {
                return bad("beam sampling (sampling with num_beams > 1) is not supported".into());
            }
        }
        if self.max_new_tokens == Some(0) {
            return bad("max_new_tokens must be at least 1".into());
        }
        Ok(())
    }

    fn max_total(&self, prompt: usize) -> usize {
        match self.max_new_tokens {
            Some(n) => prompt + n,
            None => self.max_length,
        }
    }
}

/// Prompts (already tokenised) and their keep mask: rows of equal length, left padded.
#[derive(Clone, Debug)]
pub struct Prompts {
    pub ids: Vec<Vec<u32>>,
    /// 1 for a real token, 0 for padding.
    pub mask: Vec<Vec<u8>>,
}

impl Prompts {
    /// Left pads `rows` with `pad` to the longest.
    pub fn left_padded(rows: &[Vec<u32>], pad: u32) -> Prompts {
        let n = rows.iter().map(Vec::len).max().unwrap_or(0);
        let ids = rows
            .iter()
            .map(|r| {
                std::iter::repeat_n(pad, n - r.len())
                    .chain(r.iter().copied())
                    .collect()
            })
            .collect();
        let mask = rows
            .iter()
            .map(|r| {
                std::iter::repeat_n(0, n - r.len())
                    .chain(std::iter::repeat_n(1, r.len()))
                    .collect()
            })
            .collect();
        Prompts { ids, mask }
    }
}

/// Generated sequences (prompt included, as transformers returns them), `num_return_sequences`
/// rows per prompt, and each row's score (beam search: the length-penalised log-probability).
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub sequences: Vec<Vec<u32>>,
    pub scores: Option<Vec<f32>>,
    pub prompt_len: usize,
}

/// Runs `cfg` on `decoder` from `prompts`.
pub fn generate(
    decoder: &mut dyn Decoder,
    prompts: &Prompts,
    cfg: &GenerationConfig,
    device: &Device,
) -> crate::Result<Generated> {
    cfg.validate()?;
    let b = prompts.ids.len();
    let t = prompts.ids.first().map_or(0, Vec::len);
    if b == 0 || t == 0 {
        return Err(crate::Error::Config(
            "generation needs at least one prompt of at least one token".into(),
        ));
    }
    if prompts
        .ids
        .iter()
        .chain(std::iter::empty())
        .any(|r| r.len() != t)
        || prompts.mask.len() != b
        || prompts.mask.iter().any(|r| r.len() != t)
    {
        return Err(crate::Error::Shape(
            "prompts and their mask must be rows of one length".into(),
        ));
    }
    if cfg.max_total(t) <= t {
        return Err(crate::Error::Config(format!(
            "max_length {} leaves no room after a {t}-token prompt",
            cfg.max_total(t)
        )));
    }
    Ok(if cfg.num_beams > 1 {
        beam_search(decoder, prompts, cfg, device)?
    } else {
        greedy_or_sample(decoder, prompts, cfg, device)?
    })
}

/// Positions `cumsum(mask) - 1` of each row of a 0/1 keep mask (0 under padding), as
/// transformers derives them.
pub fn positions(mask: &[Vec<u8>]) -> Vec<Vec<u32>> {
    mask.iter()
        .map(|m| {
            let mut c = 0u32;
            m.iter()
                .map(|&k| {
                    c += k as u32;
                    if k == 0 {
                        0
                    } else {
                        c - 1
                    }
                })
                .collect()
        })
        .collect()
}

/// The additive mask [R, 1, n, T] of the last `n` of T positions of rows with 0/1 keep `mask`
/// (R rows of T): causal and padding, `f32::MIN` where a key is hidden (a padding query's row keeps
/// finite scores and is uniform, as transformers' `finfo.min` makes it).
pub fn causal_padding_mask(mask: &[Vec<u8>], n: usize, device: &Device) -> Result<Tensor> {
    let r = mask.len();
    let t = mask.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(r * n * t);
    for m in mask {
        for i in 0..n {
            let q = t - n + i;
            for (j, &k) in m.iter().enumerate() {
                out.push(if j > q || k == 0 { f32::MIN } else { 0.0 });
            }
        }
    }
    Tensor::from_vec(out, (r, 1, n, t), device)
}

/// Per-row state of the running sequences: ids, keep mask and the next position.
struct Rows {
    ids: Vec<Vec<u32>>,
    mask: Vec<Vec<u8>>,
}

impl Rows {
    /// The forward of the last `n` tokens: ids, positions and the additive mask [R, 1, n, T].
    fn step(&self, decoder: &mut dyn Decoder, n: usize, device: &Device) -> Result<Tensor> {
        let r = self.ids.len();
        let t = self.ids[0].len();
        let pos = positions(&self.mask);
        let last = |v: &Vec<u32>| v[t - n..].to_vec();
        let ids: Vec<u32> = self.ids.iter().flat_map(last).collect();
        let ps: Vec<u32> = pos.iter().flat_map(last).collect();
        let ids = Tensor::from_vec(ids, (r, n), device)?;
        let ps = Tensor::from_vec(ps, (r, n), device)?;
        let mask = causal_padding_mask(&self.mask, n, device)?;
        decoder.step(&ids, &ps, &mask)?.to_dtype(DType::F32)
    }

    fn push(&mut self, tokens: &[u32]) {
        for ((ids, m), &tok) in self.ids.iter_mut().zip(&mut self.mask).zip(tokens) {
            ids.push(tok);
            m.push(1);
        }
    }

    fn select(&mut self, rows: &[usize]) {
        self.ids = rows.iter().map(|&i| self.ids[i].clone()).collect();
        self.mask = rows.iter().map(|&i| self.mask[i].clone()).collect();
    }
}

/// The logits processors transformers applies, in its order: repetition penalty, then
/// `min_new_tokens` (eos forbidden).
fn process(scores: &mut [f32], seq: &[u32], new_tokens: usize, cfg: &GenerationConfig) {
    if cfg.repetition_penalty != 1.0 {
        let p = cfg.repetition_penalty;
        // gather, then scatter: a token seen twice is penalised once.
        let mut seen: Vec<u32> = seq.to_vec();
        seen.sort_unstable();
        seen.dedup();
        for &tok in &seen {
            if let Some(s) = scores.get_mut(tok as usize) {
                *s = if *s < 0.0 { *s * p } else { *s / p };
            }
        }
    }
    if new_tokens < cfg.min_new_tokens {
        if let Some(s) = cfg.eos_token_id.and_then(|e| scores.get_mut(e as usize)) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// The sampling warpers, in transformers' order: temperature, top-k, top-p.
fn warp(scores: &mut [f32], s: &Sampling) {
    if s.temperature != 1.0 {
        scores.iter_mut().for_each(|x| *x /= s.temperature);
    }
    if s.top_k > 0 && s.top_k < scores.len() {
        let mut sorted = scores.to_vec();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        let kth = sorted[s.top_k - 1];
        scores
            .iter_mut()
            .filter(|x| **x < kth)
            .for_each(|x| *x = f32::NEG_INFINITY);
    }
    if s.top_p < 1.0 {
        // Ascending; drop the low tail whose cumulative probability is <= 1 - top_p, keeping
        // at least the most likely token.
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let probs = softmax(&order.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        let mut cum = 0.0f32;
        for (rank, &i) in order.iter().enumerate() {
            cum += probs[rank];
            if cum <= 1.0 - s.top_p && rank + 1 < order.len() {
                scores[i] = f32::NEG_INFINITY;
            }
        }
    }
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn log_softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = x.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
    x.iter().map(|v| v - m - lse).collect()
}

fn argmax(x: &[f32]) -> usize {
    // The first maximum, as torch.argmax.
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}

fn greedy_or_sample(
    decoder: &mut dyn Decoder,
    prompts: &Prompts,
    cfg: &GenerationConfig,
    device: &Device,
) -> crate::Result<Generated> {
    let t0 = prompts.ids[0].len();
    let max_total = cfg.max_total(t0);
    let mut rows = Rows {
        ids: prompts.ids.clone(),
        mask: prompts.mask.clone(),
    };
    let mut rng = cfg
        .sampling
        .map(|s| <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(s.seed));
    let mut unfinished = vec![true; rows.ids.len()];
    let mut logits = rows.step(decoder, t0, device)?;
    loop {
        let all: Vec<Vec<f32>> = logits.to_vec2()?;
        let mut next = Vec::with_capacity(all.len());
        for (i, mut scores) in all.into_iter().enumerate() {
            let len = rows.ids[i].len();
            process(&mut scores, &rows.ids[i], len - t0, cfg);
            let tok = match (&cfg.sampling, rng.as_mut()) {
                (Some(s), Some(rng)) => {
                    warp(&mut scores, s);
                    let p = softmax(&scores);
                    if p.iter().any(|v| !v.is_finite()) {
                        return Err(crate::Error::Msg(
                            "the decoder's scores are not finite (NaN weights?)".into(),
                        ));
                    }
                    let u: f32 = rng.random();
                    let mut acc = 0.0;
                    p.iter()
                        .position(|v| {
                            acc += v;
                            acc > u
                        })
                        .unwrap_or(argmax(&p))
                }
                _ => argmax(&scores),
            };
            // transformers pads finished rows with pad (eos when no pad is set).
            next.push(
                match (unfinished[i], cfg.pad_token_id.or(cfg.eos_token_id)) {
                    (false, Some(pad)) => pad,
                    _ => tok as u32,
                },
            );
        }
        rows.push(&next);
        let len = rows.ids[0].len();
        for (u, &tok) in unfinished.iter_mut().zip(&next) {
            if Some(tok) == cfg.eos_token_id || len >= max_total {
                *u = false;
            }
        }
        if !unfinished.iter().any(|&u| u) {
            break;
        }
        logits = rows.step(decoder, 1, device)?;
    }
    Ok(Generated {
        sequences: rows.ids,
        scores: None,
        prompt_len: t0,
    })
}

/// One hypothesis of a batch row.
#[derive(Clone, Debug)]
struct Hyp {
    seq: Vec<u32>,
    score: f32,
    /// Tokens generated (beam_indices that are set).
    generated: usize,
    finished: bool,
}

/// torch.topk's order: descending by value; the lower index first among equal values.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// transformers' vectorised beam search (`_beam_search`), one batch row at a time, in f32 as
/// it computes.
fn beam_search(
    decoder: &mut dyn Decoder,
    prompts: &Prompts,
    cfg: &GenerationConfig,
    device: &Device,
) -> crate::Result<Generated> {
    let k = cfg.num_beams;
    let b = prompts.ids.len();
    let t0 = prompts.ids[0].len();
    let max_total = cfg.max_total(t0);
    let n_eos = usize::from(cfg.eos_token_id.is_some());
    let keep = 2.max(1 + n_eos) * k;
    let lp = cfg.length_penalty;
    // transformers: `pad_token_id or eos_token_id[0]` (a pad id of 0 counts as none).
    let fill = match (cfg.pad_token_id, cfg.eos_token_id) {
        (_, None) => cfg.pad_token_id.unwrap_or(0),
        (Some(p), _) if p != 0 => p,
        (_, Some(e)) => e,
    };
    // Every prompt row repeated num_beams times.
    let expand: Vec<usize> = (0..b).flat_map(|i| std::iter::repeat_n(i, k)).collect();
    decoder.select_rows(&Tensor::from_vec(
        expand.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        b * k,
        device,
    )?)?;
    let mut rows = Rows {
        ids: prompts.ids.clone(),
        mask: prompts.mask.clone(),
    };
    rows.select(&expand);
    let mut running: Vec<Vec<f32>> = (0..b)
        .map(|_| (0..k).map(|j| if j == 0 { 0.0 } else { -1e9 }).collect())
        .collect();
    let mut running_gen: Vec<Vec<usize>> = vec![vec![0; k]; b];
    let mut finished: Vec<Vec<Hyp>> = (0..b)
        .map(|i| {
            (0..k)
                .map(|_| Hyp {
                    seq: prompts.ids[i].clone(),
                    score: -1e9,
                    generated: 0,
                    finished: false,
                })
                .collect()
        })
        .collect();
    let mut unsatisfied = vec![true; b];
    let mut cur_len = t0;
    let mut logits = rows.step(decoder, t0, device)?;
    loop {
        let all: Vec<Vec<f32>> = logits.to_vec2()?;
        let vocab = all[0].len();
        let mut next_rows = Vec::with_capacity(b * k);
        let mut next_tokens = Vec::with_capacity(b * k);
        let mut all_hit = true;
        for bi in 0..b {
            // [K * V] accumulated log-probabilities.
            let mut acc = Vec::with_capacity(k * vocab);
            for (j, &beam_score) in running[bi].iter().enumerate() {
                let r = bi * k + j;
                let mut lps = log_softmax(&all[r]);
                process(&mut lps, &rows.ids[r], cur_len - t0, cfg);
                acc.extend(lps.into_iter().map(|v| v + beam_score));
            }
            let top = top_k(&acc, keep);
            let cand: Vec<(f32, usize, u32, bool)> = top
                .iter()
                .map(|&i| {
                    let (beam, tok) = (i / vocab, (i % vocab) as u32);
                    let hit = Some(tok) == cfg.eos_token_id || cur_len + 1 >= max_total;
                    (acc[i], beam, tok, hit)
                })
                .collect();
            all_hit &= cand.iter().all(|c| c.3);
            // e. The best unfinished continuations run on.
            let run_scores: Vec<f32> = cand
                .iter()
                .map(|c| if c.3 { c.0 + -1.0e9 } else { c.0 })
                .collect();
            let chosen = top_k(&run_scores, k);
            // f. Finished hypotheses among the top num_beams enter the finished set.
            let penalty = (((cur_len + 1 - t0) as f64).powf(lp as f64)) as f32;
            let full =
                finished[bi].iter().all(|h| h.finished) && cfg.early_stopping == EarlyStopping::Yes;
            let mut merged: Vec<Hyp> = finished[bi].clone();
            for (j, c) in cand.iter().enumerate() {
                let did = c.3 && j < k;
                let mut s = c.0 / penalty;
                if full {
                    s += -1.0e9;
                }
                if !unsatisfied[bi] {
                    s += -1.0e9;
                }
                if !did {
                    s += -1.0e9;
                }
                let r = bi * k + c.1;
                let mut seq = rows.ids[r].clone();
                seq.push(c.2);
                merged.push(Hyp {
                    seq,
                    score: s,
                    generated: running_gen[bi][c.1] + 1,
                    finished: did,
                });
            }
            let scores: Vec<f32> = merged.iter().map(|h| h.score).collect();
            finished[bi] = top_k(&scores, k)
                .into_iter()
                .map(|i| merged[i].clone())
                .collect();
            let mut new_running = Vec::with_capacity(k);
            let mut new_gen = Vec::with_capacity(k);
            for &j in &chosen {
                let c = cand[j];
                next_rows.push(bi * k + c.1);
                next_tokens.push(c.2);
                new_running.push(run_scores[j]);
                new_gen.push(running_gen[bi][c.1] + 1);
            }
            running[bi] = new_running;
            running_gen[bi] = new_gen;
        }
        rows.select(&next_rows);
        rows.push(&next_tokens);
        cur_len += 1;
        // The early-stop heuristic, per batch row.
        let best_len = match cfg.early_stopping {
            EarlyStopping::Never if lp > 0.0 => max_total - t0,
            _ => cur_len - t0,
        };
        let denom = ((best_len as f64).powf(lp as f64)) as f32;
        for bi in 0..b {
            let best = running[bi][0] / denom;
            let min_finished = finished[bi]
                .iter()
                .map(|h| h.score)
                .fold(f32::INFINITY, f32::min);
            let can_improve = finished[bi]
                .iter()
                .any(|h| best > if h.finished { min_finished } else { -1.0e9 });
            unsatisfied[bi] &= can_improve;
        }
        let improvement = unsatisfied.iter().any(|&u| u);
        let all_done = finished.iter().flatten().all(|h| h.finished)
            && cfg.early_stopping == EarlyStopping::Yes;
        if !improvement || all_done || all_hit {
            break;
        }
        decoder.select_rows(&Tensor::from_vec(
            next_rows.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            b * k,
            device,
        )?)?;
        logits = rows.step(decoder, 1, device)?;
    }
    let n = cfg.num_return_sequences;
    let out: Vec<&Hyp> = finished.iter().flat_map(|f| f.iter().take(n)).collect();
    let longest = t0 + out.iter().map(|h| h.generated).max().unwrap_or(0);
    let sequences = out
        .iter()
        .map(|h| {
            let mut s: Vec<u32> = h.seq.iter().copied().take(longest).collect();
            s.resize(longest, fill);
            s
        })
        .collect();
    Ok(Generated {
        sequences,
        scores: Some(out.iter().map(|h| h.score).collect()),
        prompt_len: t0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoder whose next-token logits depend only on the last token (a bigram table), so
    /// the loop's bookkeeping can be checked by hand.
    struct Bigram {
        table: Vec<Vec<f32>>,
        rows: Vec<u32>,
    }

    impl Decoder for Bigram {
        fn step(&mut self, ids: &Tensor, _: &Tensor, _: &Tensor) -> Result<Tensor> {
            let ids: Vec<Vec<u32>> = ids.to_vec2()?;
            let v: Vec<f32> = ids
                .iter()
                .flat_map(|r| self.table[*r.last().unwrap() as usize].clone())
                .collect();
            Tensor::from_vec(v, (ids.len(), self.table.len()), &Device::Cpu)
        }
        fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
            self.rows = rows.to_vec1()?;
            Ok(())
        }
    }

    #[test]
    fn greedy_follows_the_table_and_pads_after_eos() {
        // 0 -> 2, 2 -> 3 (eos), 1 -> 1 forever.
        let mut table = vec![vec![0.0; 4]; 4];
        table[0][2] = 1.0;
        table[2][3] = 1.0;
        table[1][1] = 1.0;
        table[3][0] = 1.0;
        let mut d = Bigram {
            table,
            rows: vec![],
        };
        let cfg = GenerationConfig {
            max_new_tokens: Some(4),
            eos_token_id: Some(3),
            pad_token_id: Some(0),
            ..Default::default()
        };
        let p = Prompts::left_padded(&[vec![0], vec![1, 1]], 0);
        let g = generate(&mut d, &p, &cfg, &Device::Cpu).unwrap();
        assert_eq!(
            g.sequences,
            vec![vec![0, 0, 2, 3, 0, 0], vec![1, 1, 1, 1, 1, 1]]
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut d = Bigram {
            table: vec![vec![0.0; 2]; 2],
            rows: vec![],
        };
        let p = Prompts::left_padded(&[vec![0]], 0);
        for cfg in [
            GenerationConfig {
                num_beams: 0,
                ..Default::default()
            },
            GenerationConfig {
                num_beams: 2,
                num_return_sequences: 3,
                ..Default::default()
            },
            GenerationConfig {
                repetition_penalty: f32::NAN,
                ..Default::default()
            },
            GenerationConfig {
                max_length: 1,
                ..Default::default()
            },
        ] {
            assert!(generate(&mut d, &p, &cfg, &Device::Cpu).is_err(), "{cfg:?}");
        }
    }
}
