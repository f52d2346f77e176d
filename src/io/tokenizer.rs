//! Tokenizer: `tokenizers` on a checkpoint's tokenizer.json.
