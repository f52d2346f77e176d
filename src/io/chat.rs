//! Chat template rendering (minijinja, configured to behave like transformers' jinja2 setup) and
//! the expansion of each image's `<|image_pad|>` placeholder to one token per merged patch.

use std::path::Path;

use minijinja::value::{from_args, Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind, State};

use crate::{Error, Result};

/// The chat template of Qwen3-VL-*-Instruct checkpoints (their `chat_template.json`), used when a
/// model directory carries none.
pub const QWEN3_VL_CHAT_TEMPLATE: &str = include_str!("qwen3_vl_chat_template.jinja");

/// One piece of a message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text.
    Text(String),
    /// An image; its pixels travel separately, in the order the images appear in the conversation.
    Image,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text and image parts, in order.
    pub content: Vec<Part>,
}

impl Message {
    /// A message from its role and parts.
    pub fn new(role: impl Into<String>, content: Vec<Part>) -> Self {
        Message { role: role.into(), content }
    }

    /// A message holding one piece of text.
    pub fn text(role: impl Into<String>, text: impl Into<String>) -> Self {
        Message { role: role.into(), content: vec![Part::Text(text.into())] }
    }

    /// The message as HF chat templates see it: a lone text part as a plain string (what text-only
    /// templates expect), anything else as a list of `{type: "text", text}` / `{type: "image"}`.
    fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let content = match self.content.as_slice() {
            [Part::Text(t)] => json!(t),
            parts => parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image => json!({"type": "image"}),
                })
                .collect(),
        };
        json!({"role": self.role, "content": content})
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("source_len", &self.source.len()).finish()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles template source. A syntax error is [`Error::Model`]: templates come with models.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        // transformers compiles templates with these two jinja2 options; whitespace depends on them.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.set_unknown_method_callback(python_method);
        // jinja2 prints Python's spelling of these (`True`, `None`); minijinja's is lower case.
        env.set_formatter(|out, state, value| match value.kind() {
            ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" }).map_err(Into::into),
            ValueKind::None => out.write_str("None").map_err(Into::into),
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| Error::Model(format!("chat template does not compile: {}", describe(&e))))?;
        Ok(ChatTemplate { env, source })
    }

    /// The built-in Qwen3-VL-Instruct template.
    pub fn qwen3_vl() -> Self {
        // The built-in source is tested to compile, so this cannot fail at run time.
        Self::new(QWEN3_VL_CHAT_TEMPLATE).expect("built-in chat template compiles")
    }

    /// Loads the template a model directory carries, looking where transformers does:
    /// `chat_template.jinja`, then `chat_template.json` (`{"chat_template": ...}`), then the
    /// `chat_template` field of `tokenizer_config.json`; with none of these, the built-in
    /// Qwen3-VL-Instruct template. A file that exists but cannot be used is an error, not skipped.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            return Self::new(read(&jinja)?).map_err(|e| in_file(e, &jinja));
        }
        for name in ["chat_template.json", "tokenizer_config.json"] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let json: serde_json::Value = serde_json::from_str(&read(&path)?)
                .map_err(|e| Error::Model(format!("{}: not JSON: {e}", path.display())))?;
            match template_field(&json["chat_template"]) {
                Some(source) => return Self::new(source).map_err(|e| in_file(e, &path)),
                None if name == "chat_template.json" => {
                    return Err(Error::Model(format!("{}: no `chat_template` string", path.display())))
                }
                None => {}
            }
        }
        Ok(Self::qwen3_vl())
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation; `add_generation_prompt` appends the assistant header the model
    /// continues from.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`ChatTemplate::render`] with extra template variables, as transformers passes its keyword
    /// arguments (`tools`, `add_vision_id`, `enable_thinking`, ...). Errors, including the
    /// template's own `raise_exception`, are [`Error::Input`]: they are about the conversation.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let mut ctx = serde_json::Map::new();
        ctx.insert("tools".into(), serde_json::Value::Null);
        ctx.insert("documents".into(), serde_json::Value::Null);
        ctx.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        ctx.insert("messages".into(), messages.iter().map(Message::to_json).collect());
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        let tmpl = self.env.get_template(NAME).map_err(|e| Error::Model(describe(&e)))?;
        tmpl.render(Value::from_serialize(&ctx)).map_err(|e| Error::Input(format!("chat template: {}", describe(&e))))
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Model(msg) => Error::Model(format!("{}: {msg}", path.display())),
        other => other,
    }
}

/// `chat_template` is a string, or (older tokenizer configs with several templates) a list of
/// `{name, template}` of which transformers uses `default`.
fn template_field(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => {
            items.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(str::to_string)
        }
        _ => None,
    }
}

/// The message of a `raise_exception` call, else the error with its template location.
fn describe(e: &minijinja::Error) -> String {
    let mut msg = match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        _ => e.to_string(),
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `tojson`: Python's `json.dumps` (`", "` and `": "` separators, non-ASCII kept,
/// no HTML escaping), with its `indent`, `separators`, `ensure_ascii` and `sort_keys` options.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let _sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(v).map_err(|_| bad("tojson: indent must be a count or a string"))?),
        }),
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => return Err(bad("tojson: separators must be a pair")),
        // Python drops the space after commas when indenting.
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let json = serde_json::to_value(&value).map_err(|e| bad(&format!("tojson: {e}")))?;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        PyFormatter { item_sep, key_sep, indent, depth: 0, has_items: Vec::new() },
    );
    serde::Serialize::serialize(&json, &mut ser).map_err(|e| bad(&format!("tojson: {e}")))?;
    let mut text = String::from_utf8(out).map_err(|e| bad(&format!("tojson: {e}")))?;
    if ensure_ascii.unwrap_or(false) {
        text = text
            .chars()
            .flat_map(|c| {
                if c.is_ascii() {
                    vec![c.to_string()]
                } else {
                    c.encode_utf16(&mut [0; 2]).iter().map(|u| format!("\\u{u:04x}")).collect()
                }
            })
            .collect();
    }
    Ok(Value::from_safe_string(text))
}

fn bad(msg: &str) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, msg.to_string())
}

/// Writes JSON the way Python's `json.dumps` lays it out.
struct PyFormatter {
    item_sep: String,
    key_sep: String,
    indent: Option<String>,
    depth: usize,
    has_items: Vec<bool>,
}

impl PyFormatter {
    fn open<W: ?Sized + std::io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_items.push(false);
        w.write_all(bracket)
    }

    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_items.pop().unwrap_or(false) {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }

    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if let Some(last) = self.has_items.last_mut() {
            *last = true;
        }
        if !first {
            w.write_all(self.item_sep.as_bytes())?;
        }
        self.newline(w)
    }

    fn newline<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        if let Some(indent) = &self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.depth {
                w.write_all(indent.as_bytes())?;
            }
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(self.key_sep.as_bytes())
    }
}

/// The Python `str` and `dict` methods HF templates call (`.startswith`, `.split`, `.strip`,
/// `.items()`, `.get()`, ...), which jinja2 inherits from Python and minijinja lacks.
fn python_method(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        return string_method(s, method, args);
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => {
                let () = from_args(args)?;
                state.apply_filter("items", std::slice::from_ref(value))
            }
            "keys" => {
                let () = from_args(args)?;
                Ok(Value::from(value.try_iter()?.collect::<Vec<_>>()))
            }
            "values" => {
                let () = from_args(args)?;
                let keys: Vec<Value> = value.try_iter()?.collect();
                Ok(Value::from(keys.iter().map(|k| value.get_item(k)).collect::<std::result::Result<Vec<_>, _>>()?))
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                let v = value.get_item(&key)?;
                Ok(if v.is_undefined() { default.unwrap_or(Value::from(())) } else { v })
            }
            _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
        };
    }
    Err(minijinja::Error::from(ErrorKind::UnknownMethod))
}

fn string_method(s: &str, method: &str, args: &[Value]) -> std::result::Result<Value, minijinja::Error> {
    // Python's default strip set is whitespace; an explicit argument is a set of characters.
    let strip_set = |chars: Option<&str>| -> Box<dyn Fn(char) -> bool> {
        match chars {
            None => Box::new(char::is_whitespace),
            Some(set) => {
                let set: Vec<char> = set.chars().collect();
                Box::new(move |c| set.contains(&c))
            }
        }
    };
    // `startswith` / `endswith` take a string or a tuple (list) of strings.
    let affixes = |v: &Value| -> std::result::Result<Vec<String>, minijinja::Error> {
        match v.as_str() {
            Some(a) => Ok(vec![a.to_string()]),
            None => {
                v.try_iter()?.map(|x| x.as_str().map(str::to_string).ok_or_else(|| bad("expected strings"))).collect()
            }
        }
    };
    Ok(match method {
        "startswith" => {
            let (prefix,): (Value,) = from_args(args)?;
            Value::from(affixes(&prefix)?.iter().any(|p| s.starts_with(p.as_str())))
        }
        "endswith" => {
            let (suffix,): (Value,) = from_args(args)?;
            Value::from(affixes(&suffix)?.iter().any(|p| s.ends_with(p.as_str())))
        }
        "strip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            Value::from(s.trim_matches(|c| strip_set(chars)(c)))
        }
        "lstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            Value::from(s.trim_start_matches(|c| strip_set(chars)(c)))
        }
        "rstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            Value::from(s.trim_end_matches(|c| strip_set(chars)(c)))
        }
        "split" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let max = maxsplit.filter(|&m| m >= 0).map(|m| m as usize);
            let parts: Vec<Value> = match sep {
                Some("") => return Err(bad("split: empty separator")),
                Some(sep) => match max {
                    Some(m) => s.splitn(m + 1, sep).map(Value::from).collect(),
                    None => s.split(sep).map(Value::from).collect(),
                },
                None => split_whitespace(s, max).into_iter().map(Value::from).collect(),
            };
            Value::from(parts)
        }
        "upper" => {
            let () = from_args(args)?;
            Value::from(s.to_uppercase())
        }
        "lower" => {
            let () = from_args(args)?;
            Value::from(s.to_lowercase())
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            match count.filter(|&c| c >= 0) {
                Some(c) => Value::from(s.replacen(old, new, c as usize)),
                None => Value::from(s.replace(old, new)),
            }
        }
        "find" => {
            let (needle,): (&str,) = from_args(args)?;
            Value::from(s.find(needle).map_or(-1, |i| s[..i].chars().count() as i64))
        }
        "count" => {
            let (needle,): (&str,) = from_args(args)?;
            Value::from(if needle.is_empty() { s.chars().count() + 1 } else { s.matches(needle).count() })
        }
        _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    })
}

/// Python's `str.split()` with no separator: runs of whitespace separate, ends are dropped.
fn split_whitespace(s: &str, max: Option<usize>) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if max.is_some_and(|m| parts.len() == m) {
            parts.push(rest.to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        parts.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    parts
}

/// Replaces the k-th `image_pad` in `text` with `counts[k]` copies of it: the number of tokens
/// image k fills (`grid_t * grid_h * grid_w / merge_size^2`, see
/// [`crate::io::image::Pixels::num_tokens`]).
pub fn expand_image_pads(text: &str, image_pad: &str, counts: &[usize]) -> Result<String> {
    if image_pad.is_empty() {
        return Err(Error::Input("expand_image_pads: empty placeholder".into()));
    }
    let found = text.matches(image_pad).count();
    if found != counts.len() {
        return Err(Error::Input(format!(
            "the prompt has {found} {image_pad} placeholder(s) but {} image(s) were given",
            counts.len()
        )));
    }
    if let Some(k) = counts.iter().position(|&c| c == 0) {
        return Err(Error::Input(format!("image {k} has no tokens")));
    }
    let mut out = String::with_capacity(text.len() + counts.iter().sum::<usize>() * image_pad.len());
    let mut pieces = text.split(image_pad);
    // `split` yields one more piece than there are placeholders.
    out.push_str(pieces.next().unwrap_or(""));
    for (piece, &n) in pieces.zip(counts) {
        for _ in 0..n {
            out.push_str(image_pad);
        }
        out.push_str(piece);
    }
    Ok(out)
}
