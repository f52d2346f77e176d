//! The real Qwen3 tokenizer (vendored in tests/data/qwen3-tokenizer), the streaming decoder, chat
//! templates rendered against transformers' output (tests/data/chat), and image-pad expansion.

#[path = "common/scratch.rs"]
mod scratch;

use std::path::PathBuf;
use std::sync::OnceLock;

use lumen::io::chat::{expand_image_pads, ChatTemplate, Message, Part, QWEN3_VL_CHAT_TEMPLATE};
use lumen::io::tokenizer::Tokenizer;
use lumen::Error;
use serde_json::Value;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// Loading the 11 MB tokenizer takes a moment; the tests share one.
fn qwen3() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_file(data("qwen3-tokenizer/tokenizer.json")).unwrap())
}

const TEXTS: &[&str] = &[
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "视觉语言模型可以理解图片。",
    "日本語のテキストと、カタカナ、ひらがな。",
    "مرحبا بالعالم، هذا نص عربي.",
    "emoji: 🙂👍🏽🇫🇷 👨‍👩‍👧‍👦 🫠🦀 and math ∑∫√∞ ≠ ≤ 𝔘 𠀋",
    "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * i).collect();\n    println!(\"{x:?}\");\n}\n",
    "   leading, \t\ttabs,\n\n\nnewlines   and    runs of     spaces   ",
    "Ελληνικά, русский, हिन्दी, 한국어, ไทย",
    "<|im_start|>user\nDescribe <|vision_start|><|image_pad|><|vision_end|> this.<|im_end|>\n",
];

#[test]
fn encodes_known_sentences() {
    let tok = qwen3();
    assert_eq!(tok.encode("Hello, world!").unwrap(), vec![9707, 11, 1879, 0]);
    assert_eq!(tok.encode("Describe this image.").unwrap(), vec![74785, 419, 2168, 13]);
}

#[test]
fn special_tokens_have_their_ids() {
    let tok = qwen3();
    let specials = [
        ("<|endoftext|>", 151643),
        ("<|im_start|>", 151644),
        ("<|im_end|>", 151645),
        ("<|vision_start|>", 151652),
        ("<|vision_end|>", 151653),
        ("<|vision_pad|>", 151654),
        ("<|image_pad|>", 151655),
        ("<|video_pad|>", 151656),
    ];
    for (text, id) in specials {
        assert_eq!(tok.token_id(text), Some(id), "{text}");
        assert_eq!(tok.id_token(id).as_deref(), Some(text));
        // Inside text, the special-token string is one id, as HF encodes it.
        assert_eq!(tok.encode(text).unwrap(), vec![id], "{text}");
        assert_eq!(tok.decode(&[id]).unwrap(), text);
    }
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(ids.first(), Some(&151644));
    assert_eq!(ids.last(), Some(&151645));
    assert_eq!(tok.vocab_size(), 151669);
    assert_eq!(tok.token_id("no such token at all"), None);
}

#[test]
fn decode_inverts_encode() {
    let tok = qwen3();
    for text in TEXTS {
        let ids = tok.encode(text).unwrap();
        assert_eq!(&tok.decode(&ids).unwrap(), text);
    }
}

#[test]
fn streaming_decoder_matches_decode() {
    let tok = qwen3();
    let mut saw_held_back = false;
    for text in TEXTS {
        let ids = tok.encode(text).unwrap();
        let mut dec = tok.decoder();
        let mut streamed = String::new();
        for &id in &ids {
            match dec.push(id).unwrap() {
                Some(piece) => {
                    // Never a partial character: every piece is valid text with no replacement char.
                    assert!(!piece.contains('\u{FFFD}'), "{text:?}: {piece:?}");
                    streamed.push_str(&piece);
                }
                None => saw_held_back = true,
            }
        }
        if let Some(rest) = dec.flush().unwrap() {
            streamed.push_str(&rest);
        }
        assert_eq!(&streamed, text);
        assert_eq!(streamed, tok.decode(&ids).unwrap());
    }
    // Emoji and CJK split across byte-level tokens, so some pushes must have held text back.
    assert!(saw_held_back);
}

#[test]
fn streaming_decoder_flushes_an_incomplete_character() {
    let tok = qwen3();
    // 🫠 is four bytes in three byte-level tokens; only together do they decode to a character.
    let ids = tok.encode("🫠").unwrap();
    assert!(ids.len() > 1, "{ids:?}");
    let mut dec = tok.decoder();
    assert_eq!(dec.push(ids[0]).unwrap(), None);
    assert_eq!(dec.push(ids[1]).unwrap(), None);
    assert_eq!(dec.push(ids[2]).unwrap().as_deref(), Some("🫠"));
    assert_eq!(dec.flush().unwrap(), None);
    assert_eq!(dec.push(ids[0]).unwrap(), None);
    let flushed = dec.flush().unwrap().unwrap();
    assert_eq!(flushed, tok.decode(&ids[..1]).unwrap());
    assert!(flushed.contains('\u{FFFD}'));
}

#[test]
fn bad_ids_and_files_are_errors() {
    let tok = qwen3();
    assert!(matches!(tok.decode(&[9707, 999_999]), Err(Error::Input(_))));
    assert!(matches!(tok.decoder().push(u32::MAX), Err(Error::Input(_))));
    match Tokenizer::from_file(data("qwen3-tokenizer/missing.json")) {
        Err(Error::Io(msg)) => assert!(msg.contains("missing.json"), "{msg}"),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(matches!(Tokenizer::from_bytes(b"{\"not\": \"a tokenizer\"}"), Err(Error::Model(_))));
}

fn message_from_json(m: &Value) -> Message {
    let role = m["role"].as_str().unwrap();
    match &m["content"] {
        Value::String(s) => Message::text(role, s.as_str()),
        Value::Array(parts) => Message::new(
            role,
            parts
                .iter()
                .map(|p| match p["type"].as_str().unwrap() {
                    "text" => Part::Text(p["text"].as_str().unwrap().to_string()),
                    _ => Part::Image,
                })
                .collect(),
        ),
        other => panic!("bad content {other}"),
    }
}

/// Every case in render_reference.json was rendered by transformers' `render_jinja_template`.
#[test]
fn templates_render_as_transformers_does() {
    let reference: Value = serde_json::from_slice(&std::fs::read(data("chat/render_reference.json")).unwrap()).unwrap();
    let builtin = ChatTemplate::qwen3_vl();
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let messages: Vec<Message> = case["messages"].as_array().unwrap().iter().map(message_from_json).collect();
        let custom = case["template"].as_str().map(|t| ChatTemplate::new(t).unwrap());
        let template = custom.as_ref().unwrap_or(&builtin);
        let extra = case["extra"].as_object().unwrap();
        let got = template.render_with(&messages, case["add_generation_prompt"].as_bool().unwrap(), extra).unwrap();
        assert_eq!(got, case["expected"].as_str().unwrap(), "case {name}");
    }
}

#[test]
fn renders_a_vision_conversation_exactly() {
    let messages = [
        Message::text("system", "You are a helpful assistant."),
        Message::new("user", vec![Part::Image, Part::Text("Describe this image.".into())]),
        Message::text("assistant", "A cat sits on a wooden floor."),
    ];
    let text = ChatTemplate::qwen3_vl().render(&messages, false).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n\
         <|im_start|>assistant\nA cat sits on a wooden floor.<|im_end|>\n"
    );
    let prompt = ChatTemplate::qwen3_vl().render(&messages[..2], true).unwrap();
    assert!(prompt.ends_with("<|im_end|>\n<|im_start|>assistant\n"), "{prompt}");
    // The rendered prompt tokenizes with one id per special token.
    let ids = qwen3().encode(&prompt).unwrap();
    assert_eq!(ids.iter().filter(|&&id| id == 151655).count(), 1);
    assert_eq!(ids[0], 151644);
}

fn temp_dir(tag: &str) -> scratch::Scratch {
    scratch::Scratch::new(&format!("chat-{tag}"))
}

#[test]
fn model_dir_template_lookup_order() {
    let hello = [Message::text("user", "hi")];
    let dir = temp_dir("lookup");
    // Nothing there: the built-in template.
    let t = ChatTemplate::from_model_dir(&dir).unwrap();
    assert_eq!(t.source(), QWEN3_VL_CHAT_TEMPLATE);
    // tokenizer_config.json without a template still falls back; with one, it is used.
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"model_max_length": 262144}"#).unwrap();
    assert_eq!(ChatTemplate::from_model_dir(&dir).unwrap().source(), QWEN3_VL_CHAT_TEMPLATE);
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"chat_template": "C{{ messages[0].content }}"}"#).unwrap();
    assert_eq!(ChatTemplate::from_model_dir(&dir).unwrap().render(&hello, false).unwrap(), "Chi");
    // chat_template.json wins over tokenizer_config.json.
    std::fs::write(dir.join("chat_template.json"), r#"{"chat_template": "J{{ messages[0].content }}"}"#).unwrap();
    assert_eq!(ChatTemplate::from_model_dir(&dir).unwrap().render(&hello, false).unwrap(), "Jhi");
    // chat_template.jinja wins over both.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "T{{ messages[0].content }}{% if add_generation_prompt %}!{% endif %}\n",
    )
    .unwrap();
    assert_eq!(ChatTemplate::from_model_dir(&dir).unwrap().render(&hello, true).unwrap(), "Thi!");
    // A broken template is the model's fault.
    std::fs::write(dir.join("chat_template.jinja"), "{% if %}").unwrap();
    assert!(matches!(ChatTemplate::from_model_dir(&dir), Err(Error::Model(_))));
    std::fs::write(dir.join("chat_template.jinja"), "x").unwrap();
    std::fs::remove_file(dir.join("chat_template.jinja")).unwrap();
    std::fs::write(dir.join("chat_template.json"), "{oops").unwrap();
    assert!(matches!(ChatTemplate::from_model_dir(&dir), Err(Error::Model(_))));
    std::fs::remove_dir_all(&dir).ok();
    // A directory that is not there has no template files either.
    assert_eq!(ChatTemplate::from_model_dir(&dir).unwrap().source(), QWEN3_VL_CHAT_TEMPLATE);
}

#[test]
fn raise_exception_is_an_input_error_with_its_message() {
    let t = ChatTemplate::new(
        "{% if messages[0].role != 'system' %}{{ raise_exception('First message must be the system prompt') }}{% endif %}ok",
    )
    .unwrap();
    match t.render(&[Message::text("user", "hi")], true) {
        Err(Error::Input(msg)) => assert!(msg.contains("First message must be the system prompt"), "{msg}"),
        other => panic!("expected Error::Input, got {other:?}"),
    }
    assert_eq!(t.render(&[Message::text("system", "s")], true).unwrap(), "ok");
}

#[test]
fn expands_image_pads_per_image() {
    let pad = "<|image_pad|>";
    let text = "a<|vision_start|><|image_pad|><|vision_end|>b<|vision_start|><|image_pad|><|vision_end|>c";
    let out = expand_image_pads(text, pad, &[3, 1]).unwrap();
    assert_eq!(
        out,
        "a<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>b<|vision_start|><|image_pad|><|vision_end|>c"
    );
    assert_eq!(expand_image_pads("no images", pad, &[]).unwrap(), "no images");
    for counts in [&[3][..], &[1, 2, 3][..], &[][..]] {
        match expand_image_pads(text, pad, counts) {
            Err(Error::Input(msg)) => assert!(msg.contains("2 <|image_pad|>"), "{msg}"),
            other => panic!("expected Error::Input, got {other:?}"),
        }
    }
    assert!(matches!(expand_image_pads(text, pad, &[0, 1]), Err(Error::Input(_))));
    // 288x448 at patch 16 is an 18x28 grid: 504 patches, 126 tokens after the 2x2 merge.
    let ids = qwen3().encode(&expand_image_pads(text, pad, &[126, 4]).unwrap()).unwrap();
    assert_eq!(ids.iter().filter(|&&id| id == 151655).count(), 130);
}

#[test]
fn literal_replacement_character_streams() {
    let tok = qwen3();
    let text = "bad byte \u{FFFD} here \u{FFFD}";
    let ids = tok.encode(text).unwrap();
    let mut dec = tok.decoder();
    let mut streamed = String::new();
    for &id in &ids {
        streamed.push_str(&dec.push(id).unwrap().unwrap_or_default());
    }
    // Held back at most MAX_PENDING ids; the end arrives with the flush.
    streamed.push_str(&dec.flush().unwrap().unwrap_or_default());
    assert_eq!(streamed, text);
}
