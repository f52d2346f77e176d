//! The OpenAI chat-completions wire format: a request body checked field by field (so a wrong
//! type names its parameter), the error body every failure answers with, and the JSON of
//! completions and stream chunks.

use crate::api::GenerationOptions;
use crate::engine::serve::Finish;
use crate::io::chat::{Message, Part};
use serde_json::{json, Map, Value};

/// An error as OpenAI's API reports it: an HTTP status and `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
    /// A machine-readable code, when one applies.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    /// A 400 about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: 400, message: message.into(), kind: "invalid_request_error", param: None, code: None }
    }

    /// Any other status.
    pub fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code }
    }

    /// The error body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageUrl {
    /// The bytes of a `data:` URL.
    Inline(Vec<u8>),
    /// A `file://` path (refused unless the server allows local files).
    File(String),
}

/// An image part and where it was in the request (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// `messages[i].content[j].image_url`.
    pub param: String,
    /// Its source.
    pub url: ImageUrl,
}

/// A checked chat-completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation; image parts are `Part::Image`, their sources in `images` in order.
    pub messages: Vec<Message>,
    /// Image sources, in the order they appear.
    pub images: Vec<ImageRef>,
    /// How to answer: `max_completion_tokens` or `max_tokens`, `temperature` (default 1,
    /// OpenAI's; 0 is greedy), `top_p`, `top_k` (0 or -1 keeps every token), `seed` (none draws
    /// one), `stop` strings, `ignore_eos` (vLLM's extension).
    pub options: GenerationOptions,
    /// Server-sent events.
    pub stream: bool,
    /// A final usage chunk when streaming (`stream_options.include_usage`).
    pub include_usage: bool,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(param: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid(param, format!("`{param}` must be {want}, got {}", kind_of(got)))
}

/// A present, non-null field.
fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name).filter(|v| !v.is_null())
}

fn number(o: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match field(o, name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| wrong(name, "a number", v)),
    }
}

fn integer(o: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match field(o, name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| wrong(name, "an integer", v)),
    }
}

fn boolean(o: &Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match field(o, name) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| wrong(name, "a boolean", v)),
    }
}

/// Parses and checks a request body.
pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("the request body must be a JSON object, got {}", kind_of(&v))))?;
    if let Some(m) = o.get("model").filter(|m| !m.is_string()) {
        return Err(wrong("model", "a string", m));
    }
    let (messages, images) = messages(o.get("messages"))?;
    let temperature = number(o, "temperature")?.unwrap_or(1.0);
    if !(0.0..=100.0).contains(&temperature) {
        return Err(ApiError::invalid("temperature", format!("`temperature` must be >= 0, got {temperature}")));
    }
    let top_p = number(o, "top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid("top_p", format!("`top_p` must be in (0, 1], got {top_p}")));
    }
    let top_k = match integer(o, "top_k")? {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => return Err(ApiError::invalid("top_k", format!("`top_k` must be -1, 0 or positive, got {k}"))),
    };
    let mut max_tokens = None;
    for name in ["max_tokens", "max_completion_tokens"] {
        if let Some(n) = integer(o, name)? {
            if n < 1 {
                return Err(ApiError::invalid(name, format!("`{name}` must be at least 1, got {n}")));
            }
            max_tokens = Some(max_tokens.map_or(n as usize, |m: usize| m.min(n as usize)));
        }
    }
    // Any integer works as a seed; negative ones keep their bits.
    let seed = integer(o, "seed")?.map(|s| s as u64);
    let stop = match field(o, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(|| wrong("stop", "a string or an array of strings", s)))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(wrong("stop", "a string or an array of strings", v)),
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "`stop` strings must not be empty"));
    }
    match integer(o, "n")? {
        None | Some(1) => {}
        Some(n) => return Err(ApiError::invalid("n", format!("only n = 1 is supported, got {n}"))),
    }
    if boolean(o, "logprobs")? {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported"));
    }
    if let Some(rf) = field(o, "response_format") {
        if rf.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid("response_format", "only response_format {\"type\": \"text\"} is supported"));
        }
    }
    if field(o, "tools").is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApiError::invalid("tools", "tools are not supported"));
    }
    let stream = boolean(o, "stream")?;
    let include_usage = match field(o, "stream_options") {
        None => false,
        Some(Value::Object(so)) => boolean(so, "include_usage").map_err(|mut e| {
            e.param = Some("stream_options.include_usage".into());
            e
        })?,
        Some(v) => return Err(wrong("stream_options", "an object", v)),
    };
    Ok(ChatRequest {
        messages,
        images,
        options: GenerationOptions {
            max_tokens,
            temperature: temperature as f32,
            top_p: top_p as f32,
            top_k,
            seed,
            stop,
            ignore_eos: boolean(o, "ignore_eos")?,
        },
        stream,
        include_usage,
    })
}

fn messages(v: Option<&Value>) -> Result<(Vec<Message>, Vec<ImageRef>), ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Err(ApiError::invalid("messages", "`messages` is required")),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(ApiError::invalid("messages", "`messages` must hold at least one message"))
        }
        Some(Value::Array(a)) => a,
        Some(v) => return Err(wrong("messages", "an array of messages", v)),
    };
    let mut out = Vec::with_capacity(list.len());
    let mut images = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let m = m.as_object().ok_or_else(|| wrong(&at, "an object", m))?;
        let role = match m.get("role") {
            Some(Value::String(r)) => match r.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                other => {
                    return Err(ApiError::invalid(
                        format!("{at}.role"),
                        format!("`{at}.role` must be system, developer, user, assistant or tool, got {other:?}"),
                    ))
                }
            },
            Some(v) => return Err(wrong(&format!("{at}.role"), "a string", v)),
            None => return Err(ApiError::invalid(format!("{at}.role"), format!("`{at}.role` is required"))),
        };
        let content = match m.get("content") {
            None | Some(Value::Null) if role == "assistant" => vec![Part::Text(String::new())],
            Some(Value::String(s)) => vec![Part::Text(s.clone())],
            Some(Value::Array(parts)) => {
                let mut content = Vec::with_capacity(parts.len());
                for (j, p) in parts.iter().enumerate() {
                    content.push(part(p, &format!("{at}.content[{j}]"), &mut images)?);
                }
                content
            }
            Some(v) => return Err(wrong(&format!("{at}.content"), "a string or an array of content parts", v)),
            None => return Err(ApiError::invalid(format!("{at}.content"), format!("`{at}.content` is required"))),
        };
        out.push(Message::new(role, content));
    }
    Ok((out, images))
}

fn part(p: &Value, at: &str, images: &mut Vec<ImageRef>) -> Result<Part, ApiError> {
    let o = p.as_object().ok_or_else(|| wrong(at, "an object", p))?;
    match o.get("type").and_then(Value::as_str) {
        Some("text") => match o.get("text") {
            Some(Value::String(t)) => Ok(Part::Text(t.clone())),
            Some(v) => Err(wrong(&format!("{at}.text"), "a string", v)),
            None => Err(ApiError::invalid(format!("{at}.text"), format!("`{at}.text` is required"))),
        },
        Some("image_url") => {
            let param = format!("{at}.image_url");
            let url = match o.get("image_url") {
                Some(Value::String(u)) => u.as_str(),
                Some(Value::Object(iu)) => match iu.get("url") {
                    Some(Value::String(u)) => u.as_str(),
                    Some(v) => return Err(wrong(&format!("{param}.url"), "a string", v)),
                    None => {
                        return Err(ApiError::invalid(format!("{param}.url"), format!("`{param}.url` is required")))
                    }
                },
                Some(v) => return Err(wrong(&param, "an object with a `url`", v)),
                None => return Err(ApiError::invalid(&param, format!("`{param}` is required"))),
            };
            let url = image_url(url).map_err(|m| ApiError::invalid(&param, format!("`{param}`: {m}")))?;
            images.push(ImageRef { param, url });
            Ok(Part::Image)
        }
        Some(other) => Err(ApiError::invalid(
            format!("{at}.type"),
            format!("content part type {other:?} is not supported (text and image_url are)"),
        )),
        None => Err(ApiError::invalid(format!("{at}.type"), format!("`{at}.type` must be \"text\" or \"image_url\""))),
    }
}

/// Reads an image URL: `data:` URLs are decoded here; `file://` paths are kept for the server
/// to allow or refuse; remote URLs are refused (the server does not fetch arbitrary hosts).
pub fn image_url(url: &str) -> Result<ImageUrl, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::{alphabet, Engine};
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("data:") {
        let (head, data) = url[5..].split_once(',').ok_or("a data: URL needs a comma before its data")?;
        if !head.to_ascii_lowercase().ends_with(";base64") {
            return Err("only base64 data: URLs are supported (data:image/png;base64,...)".into());
        }
        let data: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let standard = GeneralPurpose::new(&alphabet::STANDARD, cfg);
        let url_safe = GeneralPurpose::new(&alphabet::URL_SAFE, cfg);
        let bytes = standard
            .decode(&data)
            .or_else(|e| url_safe.decode(&data).map_err(|_| e))
            .map_err(|e| format!("the data: URL is not valid base64: {e}"))?;
        return Ok(ImageUrl::Inline(bytes));
    }
    if lower.starts_with("file://") {
        return Ok(ImageUrl::File(url[7..].to_string()));
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err("remote image URLs are not fetched by this server; send the image inline as a \
                    data: URL (data:image/png;base64,...)"
            .into());
    }
    Err("unsupported image URL: use a base64 data: URL (or file:// when the server allows local files)".into())
}

/// `stop` or `length`.
pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// The `usage` object.
pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// What every response of one completion shares.
#[derive(Debug, Clone)]
pub struct Head {
    /// `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model's name.
    pub model: String,
}

impl Head {
    /// A non-streaming completion.
    pub fn completion(&self, text: &str, finish: &str, prompt: usize, completion: usize) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish,
            }],
            "usage": usage(prompt, completion),
        })
    }

    /// A stream chunk carrying `delta` (and a finish reason on the last one).
    pub fn chunk(&self, delta: Value, finish: Option<&str>, with_usage: bool) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The usage chunk that ends a stream when `include_usage` was asked for.
    pub fn usage_chunk(&self, prompt: usize, completion: usize) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [],
            "usage": usage(prompt, completion),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_full_request_parses() {
        let r = parse(
            br#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,aGk="}},
            {"type":"text","text":"what?"}]}],"temperature":0,"top_p":0.5,"top_k":-1,"max_tokens":9,
            "max_completion_tokens":7,"seed":-3,"stop":["x","y"],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[1].content, vec![Part::Image, Part::Text("what?".into())]);
        assert_eq!(r.images[0].url, ImageUrl::Inline(b"hi".to_vec()));
        assert_eq!(r.images[0].param, "messages[1].content[0].image_url");
        let o = &r.options;
        assert_eq!((o.temperature, o.top_p, o.top_k, o.max_tokens), (0.0, 0.5, 0, Some(7)));
        assert_eq!((o.seed, o.stop.len(), r.stream, r.include_usage), (Some(-3i64 as u64), 2, true, true));
    }

    #[test]
    fn wrong_types_name_their_parameter() {
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        for (body, param) in [
            (format!(r#"{{{m},"temperature":"hot"}}"#), "temperature"),
            (format!(r#"{{{m},"max_tokens":1.5}}"#), "max_tokens"),
            (format!(r#"{{{m},"stream":"yes"}}"#), "stream"),
            (format!(r#"{{{m},"stop":[1]}}"#), "stop"),
            (format!(r#"{{{m},"n":2}}"#), "n"),
            (r#"{"messages":"hi"}"#.to_string(), "messages"),
            (r#"{"messages":[{"role":"user","content":5}]}"#.to_string(), "messages[0].content"),
            (r#"{"messages":[{"role":"robot","content":"x"}]}"#.to_string(), "messages[0].role"),
        ] {
            let e = err(&body);
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{body}: {e:?}");
        }
        assert!(err("{not json").message.contains("not valid JSON"));
        assert!(err("[1]").message.contains("JSON object"));
    }

    #[test]
    fn image_urls_are_inline_or_refused() {
        assert!(image_url("https://example.com/a.png").unwrap_err().contains("not fetched"));
        assert!(image_url("data:image/png,plain").unwrap_err().contains("base64"));
        assert!(image_url("data:image/png;base64,@@@").unwrap_err().contains("not valid base64"));
        assert_eq!(image_url("data:image/png;base64,aGk").unwrap(), ImageUrl::Inline(b"hi".to_vec()));
        assert_eq!(image_url("file:///tmp/x.png").unwrap(), ImageUrl::File("/tmp/x.png".into()));
    }
}
