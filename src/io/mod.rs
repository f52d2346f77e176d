//! Everything between the user's request and token ids / pixel tensors: tokenizer, chat
//! template, image preprocessing.

pub mod chat;
pub mod image;
pub mod npy;
pub mod tokenizer;
