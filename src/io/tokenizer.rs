//! Tokenizer: HF `tokenizers` on a checkpoint's tokenizer.json, plus a streaming decoder that
//! turns generated ids into text one token at a time without ever splitting a UTF-8 character.

use std::path::Path;

use crate::{Error, Result};

/// A checkpoint's tokenizer (`tokenizer.json`); clones share it.
#[derive(Clone)]
pub struct Tokenizer {
    inner: std::sync::Arc<tokenizers::Tokenizer>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` from `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Model(msg) => Error::Model(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Model(format!("bad tokenizer.json: {e}")))?;
        Ok(Tokenizer { inner: std::sync::Arc::new(inner) })
    }

    /// Token ids of `text`. No special tokens are added (the chat template writes them), but
    /// special-token strings inside `text`, such as `<|im_start|>`, become their ids, as in HF.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Input(format!("cannot tokenize text: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included. An id outside the vocabulary is an error
    /// rather than silently dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.check_ids(ids)?;
        self.inner.decode(ids, false).map_err(|e| Error::Input(format!("cannot decode token ids: {e}")))
    }

    /// The id of a token given as its vocabulary string (`"<|image_pad|>"`, `"Hello"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary string of an id.
    pub fn id_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer knows, added (special) tokens included. The model's embedding
    /// table may have more rows (Qwen3-VL pads it to 151936).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A streaming decoder for generated ids.
    pub fn decoder(&self) -> Decoder {
        Decoder { tokenizer: self.clone(), ids: Vec::new(), prefix: 0, read: 0 }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            Some(id) => {
                Err(Error::Input(format!("token id {id} is outside the vocabulary ({} tokens)", self.vocab_size())))
            }
            None => Ok(()),
        }
    }
}

/// Turns ids into text as they are generated. Each [`Decoder::push`] returns the text that the new
/// id completes; bytes of a character split across byte-level tokens are held back until the
/// character is whole. The concatenation of everything returned, [`Decoder::flush`] included,
/// equals [`Tokenizer::decode`] of all the ids.
#[derive(Debug)]
pub struct Decoder {
    tokenizer: Tokenizer,
    /// Ids from `prefix` on; earlier ones have been emitted and are no longer needed.
    ids: Vec<u32>,
    /// Ids before `prefix` (relative to `ids`) are context only: decoding with them keeps
    /// tokenizers that strip a leading space on the first token from doing so mid-stream.
    prefix: usize,
    /// Ids before `read` have been emitted.
    read: usize,
}

/// A UTF-8 character is at most four bytes and every byte-level token adds at least one, so a
/// character still incomplete after this many pending ids is genuinely invalid (or a literal
/// U+FFFD) and will not change.
const MAX_PENDING: usize = 4;

impl Decoder {
    /// Adds one id; returns the newly completed text, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.tokenizer.check_ids(&[id])?;
        self.ids.push(id);
        let done = self.decode_range(self.prefix, self.read)?;
        let all = self.decode_range(self.prefix, self.ids.len())?;
        // The lossy UTF-8 decoding ends in U+FFFD while a character is incomplete.
        let incomplete = all.ends_with('\u{FFFD}') && self.ids.len() - self.read < MAX_PENDING;
        let new = suffix_after(&done, &all);
        if new.is_empty() || incomplete {
            return Ok(None);
        }
        let new = new.to_string();
        self.ids.drain(..self.prefix);
        self.read -= self.prefix;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(new))
    }

    /// Returns whatever is still held back (an incomplete character decodes as U+FFFD).
    pub fn flush(&mut self) -> Result<Option<String>> {
        let done = self.decode_range(self.prefix, self.read)?;
        let all = self.decode_range(self.prefix, self.ids.len())?;
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
        let new = suffix_after(&done, &all);
        Ok((!new.is_empty()).then(|| new.to_string()))
    }

    fn decode_range(&self, from: usize, to: usize) -> Result<String> {
        if from == to {
            return Ok(String::new());
        }
        self.tokenizer.decode(&self.ids[from..to])
    }
}

/// The part of `all` after `done`. Decoding more ids only appends for byte-level tokenizers; for
/// a tokenizer whose decoder rewrites earlier text, fall back to what follows the common prefix.
fn suffix_after<'s>(done: &str, all: &'s str) -> &'s str {
    if let Some(rest) = all.strip_prefix(done) {
        return rest;
    }
    let common = done.char_indices().zip(all.chars()).take_while(|((_, a), b)| a == b).count();
    let at = all.char_indices().nth(common).map_or(all.len(), |(i, _)| i);
    &all[at..]
}
