//! Tokenizers from a checkpoint's `tokenizer.json` (BERT WordPiece for BLIP), through HF's
//! `tokenizers` crate: the same normaliser, pre-tokeniser, model, post-processor and decoder
//! as transformers' fast tokenizers.
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A `tokenizer.json` tokenizer.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({})", self.path.display())
    }
}

impl TextTokenizer {
    /// Reads `path` (a `tokenizer.json`); a missing or malformed file is an error naming it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(TextTokenizer {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The `tokenizer.json` of checkpoint directory `dir`.
    pub fn in_dir(dir: &Path) -> Result<Self> {
        let p = dir.join("tokenizer.json");
        if !p.exists() {
            return Err(Error::Config(format!(
                "{} has no tokenizer.json (the model's text side needs it)",
                dir.display()
            )));
        }
        Self::from_file(&p)
    }

    /// `tokenizer(text, add_special_tokens=special)["input_ids"]`.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| Error::Msg(format!("tokenizing {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `tokenizer.decode(ids, skip_special_tokens=skip)`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Msg(format!("decoding {ids:?}: {e}")))
    }

    /// Token `id`'s string (`convert_ids_to_tokens`), `None` outside the vocabulary.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
