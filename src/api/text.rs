//! From generated tokens to the text a client sees: streaming detokenization (whole UTF-8
//! characters only) and stop strings (the answer ends before the first one; text that might
//! be the start of one is held back until it is known not to be).

use crate::io::tokenizer::{Decoder, Tokenizer};

/// One answer being written.
pub struct Answer {
    decoder: Decoder,
    stops: Vec<String>,
    /// Decoded text not yet handed out (it may begin a stop string).
    held: String,
    /// Tokens pushed.
    pub tokens: usize,
    stopped: bool,
}

impl Answer {
    /// An answer ending at any of `stops`.
    pub fn new(tokenizer: &Tokenizer, stops: Vec<String>) -> Self {
        Answer { decoder: tokenizer.decoder(), stops, held: String::new(), tokens: 0, stopped: false }
    }

    /// Adds a token; returns the text it releases and whether a stop string ended the answer.
    /// A token the tokenizer does not know (a model's padded vocabulary) adds no text.
    pub fn push(&mut self, token: u32) -> (String, bool) {
        self.tokens += 1;
        if self.stopped {
            return (String::new(), true);
        }
        if let Ok(Some(text)) = self.decoder.push(token) {
            self.held.push_str(&text);
        }
        self.release()
    }

    /// The rest of the text once generation has ended.
    pub fn finish(&mut self) -> String {
        if !self.stopped {
            if let Ok(Some(rest)) = self.decoder.flush() {
                self.held.push_str(&rest);
            }
            let (text, stopped) = self.release();
            if stopped {
                return text;
            }
            return text + &std::mem::take(&mut self.held);
        }
        String::new()
    }

    fn release(&mut self) -> (String, bool) {
        let first = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first {
            self.stopped = true;
            let text = self.held[..at].to_string();
            self.held.clear();
            return (text, true);
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let text = self.held[..keep].to_string();
        self.held.drain(..keep);
        (text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen3vl-dense/tokenizer.json"))
            .unwrap()
    }

    fn run(tok: &Tokenizer, ids: &[u32], stops: &[&str]) -> (String, bool, usize) {
        let mut a = Answer::new(tok, stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for &id in ids {
            let (t, stop) = a.push(id);
            out += &t;
            if stop {
                return (out, true, a.tokens);
            }
        }
        out += &a.finish();
        (out, false, a.tokens)
    }

    #[test]
    fn stop_strings_cut_the_answer_and_nothing_past_them_leaks() {
        let tok = tokenizer();
        let ids = tok.encode("hello world, hello again").unwrap();
        let all = tok.decode(&ids).unwrap();
        assert_eq!(run(&tok, &ids, &[]).0, all);
        let (text, stopped, _) = run(&tok, &ids, &[", h"]);
        assert!(stopped);
        assert_eq!(text, "hello world");
        // A stop string that never completes: everything comes out at the end.
        let (text, stopped, n) = run(&tok, &ids, &["again!"]);
        assert_eq!((text.as_str(), stopped, n), (all.as_str(), false, ids.len()));
    }
}
