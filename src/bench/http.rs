//! The load generator over the wire: a [`Serve`] engine that sends each request to an
//! OpenAI-compatible server (`POST /v1/chat/completions`, streamed) on its own thread and
//! turns the stream's chunks into events, so the Offline and Server scenarios can measure
//! `lumen serve` or any other such server. Tokens are counted from the content chunks (one
//! per token on lumen and vLLM), completed by the final usage chunk; their ids are not known (0).

use super::dataset::{draw_image, Sample, SampleImage};
use super::prompt;
use crate::engine::serve::{Event, Finish, Request, Serve};
use crate::io::chat::Part;
use crate::serve::client::{self, BaseUrl};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may stay silent.
const TIMEOUT: Duration = Duration::from_secs(600);

/// A sample's conversation as OpenAI messages, its image inline as a data: URL.
pub fn chat_messages(sample: &Sample) -> Result<Value> {
    let (bytes, mime) = match &sample.image {
        SampleImage::Synthetic { width, height, seed } => {
            use image::ImageEncoder;
            let img = draw_image(*width, *height, *seed);
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&img.data, img.width as u32, img.height as u32, image::ExtendedColorType::Rgb8)
                .map_err(|e| Error::Input(format!("{}: cannot encode the image: {e}", sample.origin)))?;
            (png, "image/png")
        }
        SampleImage::File(path) => {
            let b =
                std::fs::read(path).map_err(|e| Error::Io(format!("{}: {}: {e}", sample.origin, path.display())))?;
            let mime = if b.starts_with(&[0xff, 0xd8]) { "image/jpeg" } else { "image/png" };
            (b, mime)
        }
    };
    use base64::Engine;
    let url = format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    let messages: Vec<Value> = prompt::messages(sample)
        .iter()
        .map(|m| {
            let content: Vec<Value> = m
                .content
                .iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image => json!({"type": "image_url", "image_url": {"url": url}}),
                })
                .collect();
            json!({"role": m.role, "content": content})
        })
        .collect();
    Ok(Value::Array(messages))
}

/// Requests sent to a server; request `id` asks about conversation `chats[id]` (the load
/// generator numbers requests by job index).
pub struct HttpServe {
    base: BaseUrl,
    path: String,
    /// The model the server serves.
    pub model: String,
    chats: Vec<Value>,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    live: HashMap<u64, Arc<AtomicBool>>,
}

impl HttpServe {
    /// Connects to `url` (`http://host:port`), asking `/v1/models` which model it serves.
    pub fn connect(url: &str, chats: Vec<Value>) -> Result<HttpServe> {
        let base = BaseUrl::parse(url).map_err(Error::Input)?;
        let v1 = if base.prefix.ends_with("/v1") { "" } else { "/v1" };
        let models = client::get(&base, &format!("{v1}/models"), Duration::from_secs(30))
            .and_then(|r| r.json())
            .map_err(|e| Error::Io(format!("{}: GET /v1/models failed: {e}", base.display())))?;
        let model = models["data"][0]["id"]
            .as_str()
            .ok_or_else(|| Error::Io(format!("{}: /v1/models lists no model: {models}", base.display())))?
            .to_string();
        let (tx, rx) = channel();
        Ok(HttpServe { path: format!("{v1}/chat/completions"), base, model, chats, tx, rx, live: HashMap::new() })
    }
}

/// One streamed request: sends its events, unless cancelled.
fn stream(base: BaseUrl, path: String, body: Value, id: u64, cancel: Arc<AtomicBool>, tx: Sender<Event>) {
    let send = |ev: Event| {
        if !cancel.load(Ordering::SeqCst) {
            let _ = tx.send(ev);
        }
    };
    let fail = |error: String| send(Event::Failed { id, error });
    let mut r = match client::post_json(&base, &path, &body, TIMEOUT) {
        Ok(r) => r,
        Err(e) => return fail(format!("request failed: {e}")),
    };
    if r.status != 200 {
        let status = r.status;
        let msg = r.json().ok().and_then(|v| v["error"]["message"].as_str().map(str::to_string));
        return fail(format!("HTTP {status}: {}", msg.unwrap_or_default()));
    }
    let (mut counted, mut usage, mut finish, mut last_text) = (0usize, None, None, false);
    loop {
        if cancel.load(Ordering::SeqCst) {
            return r.abort();
        }
        let data = match r.next_event() {
            Ok(Some(d)) => d,
            Ok(None) => return fail("the stream ended without [DONE]".into()),
            Err(e) => return fail(format!("reading the stream: {e}")),
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = match serde_json::from_str(&data) {
            Ok(v) => v,
            Err(e) => return fail(format!("a stream chunk is not JSON ({e}): {data}")),
        };
        if let Some(err) = v.get("error") {
            return fail(err["message"].as_str().unwrap_or("error").to_string());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            usage = Some(n as usize);
        }
        let choice = &v["choices"][0];
        let content = choice["delta"]["content"].as_str();
        if let Some(f) = choice["finish_reason"].as_str() {
            // The last chunk may carry the last token (vLLM) or only held-back text (lumen):
            // the usage count settles which.
            finish = Some(if f == "length" { Finish::Length } else { Finish::Stop });
            last_text = content.is_some_and(|c| !c.is_empty());
        } else if content.is_some() && choice["delta"].get("role").is_none() {
            counted += 1;
            send(Event::Token { id, token: 0 });
        }
    }
    for _ in counted..usage.unwrap_or(counted + last_text as usize) {
        send(Event::Token { id, token: 0 });
    }
    send(Event::Done { id, finish: finish.unwrap_or(Finish::Stop) });
}

impl Serve for HttpServe {
    fn submit(&mut self, req: Request) -> Result<()> {
        let messages = self.chats.get(req.id as usize).cloned().ok_or_else(|| {
            Error::Input(format!("request {} has no prepared conversation ({} prepared)", req.id, self.chats.len()))
        })?;
        let s = &req.sampling;
        let body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": req.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "seed": s.seed,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let cancel = Arc::new(AtomicBool::new(false));
        self.live.insert(req.id, cancel.clone());
        let (base, path, tx, id) = (self.base.clone(), self.path.clone(), self.tx.clone(), req.id);
        std::thread::Builder::new()
            .name(format!("bench-http-{id}"))
            .spawn(move || stream(base, path, body, id, cancel, tx))
            .map_err(|e| Error::Io(format!("cannot start a request thread: {e}")))?;
        Ok(())
    }

    /// Waits up to 100 ms for events, then takes all that have arrived.
    fn step(&mut self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        if let Ok(ev) = self.rx.recv_timeout(Duration::from_millis(100)) {
            events.push(ev);
            events.extend(self.rx.try_iter());
        }
        events.retain(|ev| {
            let (Event::Token { id, .. } | Event::Done { id, .. } | Event::Failed { id, .. }) = ev;
            self.live.contains_key(id)
        });
        for ev in &events {
            if let Event::Done { id, .. } | Event::Failed { id, .. } = ev {
                self.live.remove(id);
            }
        }
        Ok(events)
    }

    fn cancel(&mut self, id: u64) -> bool {
        match self.live.remove(&id) {
            Some(flag) => {
                flag.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    fn pending(&self) -> usize {
        self.live.len()
    }

    fn describe(&self) -> String {
        format!("OpenAI-compatible server at {} (model {})", self.base.display(), self.model)
    }
}
