//! The reference's chat for a sample (MLPerf's `ShopifyGlobalCatalogue.formulate_loaded_sample`):
//! a system prompt asking for `{category, brand, is_secondhand}` JSON with the pydantic schema,
//! a user turn with the title, description and the candidates as a Python list, then the image.

use super::dataset::{draw_image, Sample, SampleImage};
use crate::io::chat::{Message, Part};
use crate::io::image::preprocess_rgb;
use crate::model::processor::Processor;
use crate::model::qwen3_vl::PrefillInputs;
use crate::{Error, Result};

/// The system prompt, word for word (typos included), with `ProductMetadata`'s JSON schema
/// as pydantic writes it and `json.dumps(indent=2)` lays it out.
pub const SYSTEM_PROMPT: &str = r#"Please analyze the product from the user prompt
and provide the following fields in a valid JSON object:
- category
- brand
- is_secondhand

You must choose only one, which is the most appropriate, correct, and specifc
category out of the list of possible product categories.

The description of the product sometimes contains various types of source code
(e.g., JavaScript, CSS, HTML, etc.), where useful product information is embedded
somewhere inside the source code. For this task, you should extract the useful
product information from the source code and leverage it, and discard the
programmatic parts of the source code.

Your response should only contain a valid JSON object and nothing more, e.g.,
you should not fence the JSON object inside a ```json code block.
The JSON object should match the followng JSON schema:
```json
{
  "additionalProperties": false,
  "description": "Json format for the expected responses from the VLM.",
  "properties": {
    "category": {
      "description": "The complete category of the product, e.g.,\n\"Clothing & Accessories > Clothing > Shirts > Polo Shirts\".\nEach categorical level is separated by \" > \".",
      "title": "Category",
      "type": "string"
    },
    "brand": {
      "description": "The brand of the product, e.g., \"giorgio armani\".",
      "title": "Brand",
      "type": "string"
    },
    "is_secondhand": {
      "description": "True if the product is second-hand, False otherwise.",
      "title": "Is Secondhand",
      "type": "boolean"
    }
  },
  "required": [
    "category",
    "brand",
    "is_secondhand"
  ],
  "title": "ProductMetadata",
  "type": "object"
}
```
"#;

/// Python's `repr` of a list of strings, as the reference's f-string prints the candidates:
/// single quotes unless a string holds a single quote and no double quote.
pub fn python_list_repr(items: &[String]) -> String {
    let reprs: Vec<String> = items.iter().map(|s| python_str_repr(s)).collect();
    format!("[{}]", reprs.join(", "))
}

fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The user turn's text.
pub fn user_text(sample: &Sample) -> String {
    format!(
        "The title of the product is the following:\n```text\n{}\n```\n\nThe description of the product is the \
         following:\n```text\n{}\n```\n\nThe following are the possible product categories:\n```json\n{}\n```\n",
        sample.title,
        sample.description,
        python_list_repr(&sample.candidates)
    )
}

/// The conversation: the system prompt, then the user's text followed by the image.
pub fn messages(sample: &Sample) -> Vec<Message> {
    vec![Message::text("system", SYSTEM_PROMPT), Message::new("user", vec![Part::Text(user_text(sample)), Part::Image])]
}

/// Model inputs for a sample: its image decoded (or drawn) and preprocessed, the chat rendered
/// and tokenized. Errors name the sample's origin.
pub fn prepare(sample: &Sample, processor: &Processor) -> Result<PrefillInputs> {
    let pixels = match &sample.image {
        SampleImage::Synthetic { width, height, seed } => {
            preprocess_rgb(&processor.image, &draw_image(*width, *height, *seed))
        }
        SampleImage::File(path) => processor.load_images(&[path]).map(|mut v| v.remove(0)),
    };
    let origin = |e: Error| match e {
        Error::Input(m) => Error::Input(format!("{}: {m}", sample.origin)),
        Error::Io(m) => Error::Io(format!("{}: {m}", sample.origin)),
        other => other,
    };
    processor.prepare(&messages(sample), vec![pixels.map_err(origin)?]).map_err(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_print_as_a_python_list() {
        let v = ["Home & Garden > Decor", "Kid's > Toys", "a \"b\" 'c'", "back\\slash\n"].map(String::from);
        assert_eq!(
            python_list_repr(&v),
            r#"['Home & Garden > Decor', "Kid's > Toys", 'a "b" \'c\'', 'back\\slash\n']"#
        );
        assert_eq!(python_list_repr(&[]), "[]");
    }

    #[test]
    fn the_user_turn_is_text_then_image() {
        let s = &super::super::dataset::synthetic(1, 0, &super::super::dataset::DatasetConfig::small())[0];
        let m = messages(s);
        assert_eq!(m[0].role, "system");
        assert_eq!(m[1].content.len(), 2);
        assert_eq!(m[1].content[1], Part::Image);
        let Part::Text(t) = &m[1].content[0] else { panic!() };
        assert!(t.starts_with("The title of the product is the following:\n```text\n"));
        assert!(t.contains(&format!("['{}'", s.candidates[0])));
        assert!(t.ends_with("']\n```\n"));
    }
}
