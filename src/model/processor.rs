//! From a user's conversation to model inputs, as transformers' Qwen3-VL processor does it:
//! images preprocessed, the chat template rendered, one `<|image_pad|>` run per image of the
//! right length, the text tokenized. Token ids come from the checkpoint, never hard-coded.

use super::qwen3_vl::{Pixels, PrefillInputs};
use super::Config;
use crate::io::chat::{expand_image_pads, ChatTemplate, Message};
use crate::io::image::{preprocess, ImageConfig};
use crate::io::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::Path;

/// Tokenizer, chat template and image settings of one checkpoint.
pub struct Processor {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template.
    pub template: ChatTemplate,
    /// Image preprocessing settings.
    pub image: ImageConfig,
    image_pad: String,
    merge: usize,
    /// Tokens that end an answer.
    pub stop_ids: Vec<u32>,
}

fn eos_ids(v: &serde_json::Value) -> Vec<u32> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect(),
        _ => Vec::new(),
    }
}

impl Processor {
    /// Loads `tokenizer.json`, the chat template and `preprocessor_config.json` (defaults when
    /// absent) of a model directory.
    pub fn from_dir(dir: &Path, config: &Config) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
        let template = ChatTemplate::from_model_dir(dir)?;
        let pre = dir.join("preprocessor_config.json");
        let image = if pre.is_file() { ImageConfig::from_file(&pre)? } else { ImageConfig::qwen3_vl() };
        let image_pad = tokenizer.id_token(config.image_token_id).ok_or_else(|| {
            Error::Model(format!("image_token_id {} is not a token of tokenizer.json", config.image_token_id))
        })?;
        let mut stop_ids = config.eos_token_ids.clone();
        let gen = dir.join("generation_config.json");
        if gen.is_file() {
            let text = std::fs::read_to_string(&gen).map_err(|e| Error::Io(format!("{}: {e}", gen.display())))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", gen.display())))?;
            stop_ids.extend(eos_ids(&v["eos_token_id"]));
        }
        if stop_ids.is_empty() {
            // The chat format ends a turn with <|im_end|>; look its id up rather than assume it.
            stop_ids.extend(tokenizer.token_id("<|im_end|>"));
        }
        stop_ids.sort();
        stop_ids.dedup();
        Ok(Processor { tokenizer, template, image, image_pad, merge: config.vision.spatial_merge_size, stop_ids })
    }

    /// Decodes and preprocesses image files (JPEG, PNG).
    pub fn load_images(&self, paths: &[impl AsRef<Path>]) -> Result<Vec<Pixels>> {
        paths
            .iter()
            .map(|p| {
                let p = p.as_ref();
                let bytes = std::fs::read(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
                preprocess(&self.image, &bytes).map_err(|e| Error::Input(format!("{}: {e}", p.display())))
            })
            .collect()
    }

    /// The rendered prompt text (image placeholders expanded) of a conversation.
    pub fn render(&self, messages: &[Message], images: &[Pixels]) -> Result<String> {
        let text = self.template.render(messages, true)?;
        let counts: Vec<usize> = images.iter().map(|p| p.num_tokens(self.merge)).collect();
        expand_image_pads(&text, &self.image_pad, &counts)
    }

    /// Model inputs for a conversation whose image parts are `images`, in order.
    pub fn prepare(&self, messages: &[Message], images: Vec<Pixels>) -> Result<PrefillInputs> {
        let text = self.render(messages, &images)?;
        let ids = self.tokenizer.encode(&text)?;
        Ok(PrefillInputs { ids, images })
    }
}
