//! CLIP's byte-level BPE, reproducing `transformers`' `CLIPTokenizer` (the `tokenizers`
//! pipeline): NFC, whitespace runs → one space, lower-case; split by CLIP's pattern
//! (`<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
//! everything else dropped); bytes → GPT-2's printable characters; BPE with `</w>` marking each
//! word's end; `<|startoftext|>` (49406) … `<|endoftext|>` (49407); truncation and padding
//! (with `<|endoftext|>`) to 77.
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use unicode_normalization::UnicodeNormalization;

pub const CONTEXT_LENGTH: usize = 77;

/// GPT-2's printable characters in its own order (printable bytes first, then the rest, mapped
/// to 256…): `(byte, char)` pairs. That order is also the first 256 vocabulary entries'.
fn byte_chars() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (b as u8, char::from_u32(c).unwrap_or('?')))
        .collect()
}

/// The first 256 vocabulary entries' characters, in vocabulary order.
fn byte_chars_in_vocab_order() -> Vec<char> {
    byte_chars().into_iter().map(|(_, c)| c).collect()
}

/// GPT-2's byte → printable character table, indexed by byte.
fn bytes_to_unicode() -> Vec<char> {
    let mut table = vec!['\0'; 256];
    for (b, c) in byte_chars() {
        table[b as usize] = c;
    }
    table
}

/// Token ids with their attention mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: Vec<char>,
    pattern: regex::Regex,
    cache: Mutex<HashMap<String, Vec<u32>>>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
}

impl ClipTokenizer {
    fn build(vocab: HashMap<String, u32>, merges: Vec<(String, String)>) -> Result<Self> {
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        let get = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| Error::Config(format!("vocabulary has no {t}")))
        };
        let (bos, eos) = (get("<|startoftext|>")?, get("<|endoftext|>")?);
        let pattern = regex::Regex::new(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
            .map_err(|e| Error::Msg(e.to_string()))?;
        Ok(ClipTokenizer {
            encoder: vocab,
            ranks,
            byte_chars: bytes_to_unicode(),
            pattern,
            cache: Mutex::new(HashMap::new()),
            bos,
            eos,
            pad: eos,
        })
    }

    /// From OpenAI's `bpe_simple_vocab_16e6.txt.gz` (the vocabulary is derived from the merges
    /// exactly as CLIP's `SimpleTokenizer` does).
    pub fn from_bpe_gz(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .map_err(|e| Error::data(path, format!("not a gzip text file: {e}")))?;
        let lines: Vec<&str> = text.split('\n').collect();
        let end = (49152 - 256 - 2 + 1).min(lines.len());
        if end < 2 {
            return Err(Error::data(path, "no merges"));
        }
        let merges: Vec<(String, String)> = lines[1..end]
            .iter()
            .map(|l| {
                let mut it = l.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                    _ => Err(Error::data(path, format!("bad merge line {l:?}"))),
                }
            })
            .collect::<Result<_>>()?;
        let chars = byte_chars_in_vocab_order();
        let mut vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        vocab.extend(chars.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        Self::build(
            vocab
                .into_iter()
                .enumerate()
                .map(|(i, t)| (t, i as u32))
                .collect(),
            merges,
        )
    }

    /// From a hub checkpoint's `vocab.json` and `merges.txt`.
    pub fn from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Self> {
        let v: HashMap<String, u32> = crate::util::read_json(vocab)?;
        let text = std::fs::read_to_string(merges).map_err(|e| Error::io(merges, e))?;
        let m = text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| {
                let mut it = l.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                    _ => Err(Error::data(merges, format!("bad merge line {l:?}"))),
                }
            })
            .collect::<Result<_>>()?;
        Self::build(v, m)
    }

    /// A checkpoint directory's tokenizer (`vocab.json` + `merges.txt`), else `bpe_gz`.
    pub fn for_checkpoint(dir: &Path, bpe_gz: &Path) -> Result<Self> {
        let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if v.exists() && m.exists() {
            Self::from_vocab_merges(&v, &m)
        } else if bpe_gz.exists() {
            Self::from_bpe_gz(bpe_gz)
        } else {
            Err(Error::data(
                dir,
                format!(
                    "no vocab.json/merges.txt and no {} (tools/fetch_clip_bpe.sh fetches it)",
                    bpe_gz.display()
                ),
            ))
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    fn bpe(&self, word: &str) -> Vec<u32> {
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(word).cloned()) {
            return ids;
        }
        // Characters, the last one marked as the word's end.
        let chars: Vec<char> = word.chars().collect();
        let mut parts: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = parts
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|r| (*r, i))
                })
                .min();
            let Some((_, _)) = best else { break };
            let (rank, _) = best.unwrap_or((0, 0));
            // Merge every occurrence of the best pair, left to right.
            let mut merged = Vec::with_capacity(parts.len());
            let mut i = 0;
            while i < parts.len() {
                if i + 1 < parts.len()
                    && self.ranks.get(&(parts[i].clone(), parts[i + 1].clone())) == Some(&rank)
                {
                    merged.push(format!("{}{}", parts[i], parts[i + 1]));
                    i += 2;
                } else {
                    merged.push(parts[i].clone());
                    i += 1;
                }
            }
            parts = merged;
            if parts.len() == 1 {
                break;
            }
        }
        let ids: Vec<u32> = parts
            .iter()
            .map(|p| self.encoder.get(p).copied().unwrap_or(self.eos))
            .collect();
        if let Ok(mut c) = self.cache.lock() {
            if c.len() < 100_000 {
                c.insert(word.to_string(), ids.clone());
            }
        }
        ids
    }

    /// Token ids of `text` without special tokens.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let normalized: String = text.nfc().collect::<String>();
        let mut collapsed = String::with_capacity(normalized.len());
        let mut in_space = false;
        for c in normalized.chars() {
            if c.is_whitespace() {
                if !in_space {
                    collapsed.push(' ');
                }
                in_space = true;
            } else {
                collapsed.push(c);
                in_space = false;
            }
        }
        let lower = collapsed.to_lowercase();
        let mut ids = vec![];
        for m in self.pattern.find_iter(&lower) {
            let piece = m.as_str();
            match piece {
                "<|startoftext|>" => ids.push(self.bos),
                "<|endoftext|>" => ids.push(self.eos),
                _ => {
                    let word: String = piece.bytes().map(|b| self.byte_chars[b as usize]).collect();
                    ids.extend(self.bpe(&word));
                }
            }
        }
        ids
    }

    /// `tokenizer(text)`: `<|startoftext|>` ids `<|endoftext|>`, truncated to `max_len`
    /// (keeping the end token) and, with `pad`, padded with `<|endoftext|>` to `max_len`.
    pub fn encode(&self, text: &str, max_len: usize, pad: bool) -> Encoding {
        let mut ids = vec![self.bos];
        let body = self.tokenize(text);
        let room = max_len.saturating_sub(2);
        ids.extend(body.into_iter().take(room));
        ids.push(self.eos);
        let mut attention_mask = vec![1; ids.len()];
        if pad {
            while ids.len() < max_len {
                ids.push(self.pad);
                attention_mask.push(0);
            }
        }
        Encoding {
            ids,
            attention_mask,
        }
    }

    /// A padded batch: ids [B, T] and mask [B, T] with T the longest (≤ `max_len`).
    pub fn encode_batch(&self, texts: &[&str], max_len: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let encs: Vec<Encoding> = texts
            .iter()
            .map(|t| self.encode(t, max_len, false))
            .collect();
        let t = encs.iter().map(|e| e.ids.len()).max().unwrap_or(2);
        encs.into_iter()
            .map(|mut e| {
                while e.ids.len() < t {
                    e.ids.push(self.pad);
                    e.attention_mask.push(0);
                }
                (e.ids, e.attention_mask)
            })
            .unzip()
    }
}
