//! `lumen serve` over loopback on the tiny dense fixture (cpu backend): responses and stream
//! chunks field by field against the OpenAI chat-completions schema, greedy answers equal to
//! the same prompt run alone, 200 concurrent streams with random disconnects and no leaked
//! KV blocks, bad input answered with 4xx, a full queue with 429, graceful shutdown, and the
//! official `openai` Python client (when `LUMEN_OPENAI_PYTHON` names a python that has it).

use base64::Engine as _;
use lumen::api::text::Answer;
use lumen::backend::cpu::CpuBackend;
use lumen::engine::{GenerateOptions, Session};
use lumen::io::chat::{Message, Part};
use lumen::model::processor::Processor;
use lumen::model::qwen3_vl::Qwen3VL;
use lumen::serve::client::{self, BaseUrl, Response};
use lumen::serve::{ServeConfig, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3vl-dense")
}

fn image_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name)
}

fn data_url(name: &str) -> String {
    let bytes = std::fs::read(image_path(name)).unwrap();
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn start(cfg: ServeConfig) -> (Server, BaseUrl) {
    let cfg =
        ServeConfig { host: "127.0.0.1".into(), port: 0, backend: "cpu".into(), model_name: "tiny".into(), ..cfg };
    let dir = fixture();
    let server = Server::start(
        cfg,
        Box::new(move || {
            let m = Qwen3VL::load(&dir)?;
            let p = Processor::from_dir(&dir, &m.config)?;
            Ok((m, p))
        }),
    )
    .unwrap();
    let base = BaseUrl::parse(&format!("http://{}", server.addr)).unwrap();
    (server, base)
}

/// One test prompt: text, and optionally an image before it.
#[derive(Clone)]
struct Prompt {
    text: String,
    image: Option<&'static str>,
    max_tokens: usize,
}

impl Prompt {
    fn body(&self, stream: bool) -> Value {
        let content = match self.image {
            None => json!(self.text),
            Some(img) => json!([
                {"type": "image_url", "image_url": {"url": data_url(img)}},
                {"type": "text", "text": self.text},
            ]),
        };
        json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": stream,
            "stream_options": {"include_usage": true},
        })
    }
}

/// What the same prompt gives alone through `Session::generate` (greedy, the model's stop tokens).
struct Expected {
    text: String,
    tokens: usize,
    finish: &'static str,
}

fn alone(prompts: &[Prompt]) -> Vec<Expected> {
    let dir = fixture();
    let model = Qwen3VL::load(&dir).unwrap();
    let proc = Processor::from_dir(&dir, &model.config).unwrap();
    let cpu = CpuBackend::new();
    let mut session = Session::new(&cpu, model);
    prompts
        .iter()
        .map(|p| {
            let mut content = Vec::new();
            let mut images = Vec::new();
            if let Some(img) = p.image {
                content.push(Part::Image);
                images = proc.load_images(&[image_path(img)]).unwrap();
            }
            content.push(Part::Text(p.text.clone()));
            let inputs = proc.prepare(&[Message::new("user", content)], images).unwrap();
            let opts = GenerateOptions {
                max_new_tokens: p.max_tokens,
                sampling: Default::default(),
                stop: proc.stop_ids.clone(),
            };
            let (ids, _) = session.generate(&inputs, &opts, |_| true).unwrap();
            let mut a = Answer::new(&proc.tokenizer, vec![]);
            let mut text: String = ids.iter().map(|&t| a.push(t).0).collect();
            text += &a.finish();
            Expected { text, tokens: ids.len(), finish: if ids.len() == p.max_tokens { "length" } else { "stop" } }
        })
        .collect()
}

fn prompts() -> Vec<Prompt> {
    let words = "the quick brown fox jumps over a lazy dog while seven small birds sing in old trees";
    (0..12)
        .map(|i| Prompt {
            text: words.split(' ').cycle().skip(i * 2).take(2 + i * 3).collect::<Vec<_>>().join(" "),
            image: match i % 6 {
                1 => Some("chelsea_crop_40x30.png"),
                4 => Some("chelsea_crop_80x112.png"),
                _ => None,
            },
            max_tokens: 4 + (i * 5) % 21,
        })
        .collect()
}

/// A stream read to its end: the chunks' JSON and whether `[DONE]` closed it.
fn read_stream(mut r: Response) -> (Vec<Value>, bool) {
    let mut chunks = Vec::new();
    while let Some(d) = r.next_event().unwrap() {
        if d == "[DONE]" {
            assert!(r.next_event().unwrap().is_none(), "nothing after [DONE]");
            return (chunks, true);
        }
        chunks.push(serde_json::from_str(&d).unwrap_or_else(|e| panic!("chunk {d:?}: {e}")));
    }
    (chunks, false)
}

/// Checks a stream's chunks against the chat.completion.chunk schema; returns the content.
fn check_chunks(chunks: &[Value], exp: &Expected) -> String {
    let id = chunks[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("chatcmpl-"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (last, body) = chunks.split_last().unwrap();
    // The usage chunk: no choices, the counts.
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], exp.tokens);
    let prompt = last["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(last["usage"]["total_tokens"].as_u64().unwrap(), prompt + exp.tokens as u64);
    let mut text = String::new();
    for (i, c) in body.iter().enumerate() {
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "tiny");
        assert!(c["created"].as_u64().unwrap() > 1_600_000_000);
        assert!(c["usage"].is_null());
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0]["index"], 0);
        let finish = &choices[0]["finish_reason"];
        if i + 1 == body.len() {
            assert_eq!(finish, exp.finish);
            // Only text held back at the end (an incomplete character) rides on the last chunk.
            let delta = choices[0]["delta"].as_object().unwrap();
            assert!(delta.keys().all(|k| k == "content"));
            text += delta.get("content").and_then(Value::as_str).unwrap_or("");
        } else {
            assert!(finish.is_null());
            text += choices[0]["delta"]["content"].as_str().unwrap();
        }
    }
    // The role chunk, one chunk per token, the final chunk.
    assert_eq!(body.len(), exp.tokens + 2);
    text
}

fn metric(base: &BaseUrl, name: &str) -> f64 {
    let text = String::from_utf8(client::get(base, "/metrics", T).unwrap().bytes().unwrap()).unwrap();
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).unwrap();
    line[name.len()..].trim().parse().unwrap()
}

/// Waits until the engine holds no sequence (cancellations arrive asynchronously).
fn wait_idle(base: &BaseUrl) {
    let t0 = Instant::now();
    loop {
        let busy = metric(base, "lumen_kv_blocks_in_use")
            + metric(base, "lumen_requests_running")
            + metric(base, "lumen_queue_depth");
        if busy == 0.0 {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "KV blocks still in use after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn non_streaming_answers_follow_the_schema_and_equal_generate_alone() {
    let ps: Vec<Prompt> = prompts().into_iter().take(3).collect();
    let exp = alone(&ps);
    let (server, base) = start(ServeConfig { allow_local_files: true, ..ServeConfig::default() });
    let models = client::get(&base, "/v1/models", T).unwrap().json().unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(client::get(&base, "/health", T).unwrap().status, 200);
    for (p, e) in ps.iter().zip(&exp) {
        let r = client::post_json(&base, "/v1/chat/completions", &p.body(false), T).unwrap();
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("application/json"));
        let v = r.json().unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "tiny");
        assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
        let c = &v["choices"].as_array().unwrap()[..];
        assert_eq!(c.len(), 1);
        assert_eq!(c[0]["index"], 0);
        assert_eq!(c[0]["message"]["role"], "assistant");
        assert_eq!(c[0]["message"]["content"], e.text.as_str());
        assert_eq!(c[0]["finish_reason"], e.finish);
        assert_eq!(v["usage"]["completion_tokens"], e.tokens);
        let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
        assert!(prompt > 5);
        assert_eq!(v["usage"]["total_tokens"].as_u64().unwrap(), prompt + e.tokens as u64);
    }
    // With --allow-local-files a file:// URL reads the same image as a data: URL carries.
    let inline = ps.iter().position(|p| p.image.is_some()).unwrap();
    let mut body = ps[inline].body(false);
    let file = format!("file://{}", image_path(ps[inline].image.unwrap()).display());
    body["messages"][0]["content"][0]["image_url"]["url"] = json!(file);
    let v = client::post_json(&base, "/v1/chat/completions", &body, T).unwrap().json().unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], exp[inline].text.as_str());
    // A stop string ends the answer before it.
    let p = Prompt { max_tokens: 24, ..ps[0].clone() };
    let full = alone(std::slice::from_ref(&p)).remove(0).text;
    let cut = full.char_indices().map(|(i, _)| i).nth(3).filter(|_| full.chars().count() > 6);
    if let Some(at) = cut {
        let stop: String = full[at..].chars().take(2).collect();
        let mut body = p.body(false);
        body["stop"] = json!([stop]);
        let v = client::post_json(&base, "/v1/chat/completions", &body, T).unwrap().json().unwrap();
        let want = &full[..full.find(&stop).unwrap()];
        assert_eq!(v["choices"][0]["message"]["content"], want);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
    server.shutdown().unwrap();
}

#[test]
fn streamed_chunks_with_an_image_follow_the_schema_and_equal_generate_alone() {
    let p = Prompt { text: "What is in this picture?".into(), image: Some("chelsea_crop_80x112.png"), max_tokens: 12 };
    let exp = alone(std::slice::from_ref(&p)).remove(0);
    let (server, base) = start(ServeConfig::default());
    let r = client::post_json(&base, "/v1/chat/completions", &p.body(true), T).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let (chunks, done) = read_stream(r);
    assert!(done, "the stream ends with [DONE]");
    assert_eq!(check_chunks(&chunks, &exp), exp.text);
    // Without include_usage there is no usage chunk and no usage field.
    let mut body = p.body(true);
    body.as_object_mut().unwrap().remove("stream_options");
    let (chunks, done) = read_stream(client::post_json(&base, "/v1/chat/completions", &body, T).unwrap());
    assert!(done);
    assert!(chunks.iter().all(|c| c.get("usage").is_none() && c["choices"].as_array().unwrap().len() == 1));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], exp.finish);
    server.shutdown().unwrap();
}

#[test]
fn two_hundred_concurrent_streams_equal_their_requests_alone_and_leak_no_kv_blocks() {
    use rand::{Rng, SeedableRng};
    let ps = prompts();
    let exp = std::sync::Arc::new(alone(&ps));
    let (server, base) = start(ServeConfig::default());
    let n = 200;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    // About one client in five goes away after a random number of chunks.
    let plan: Vec<Option<usize>> = (0..n).map(|_| rng.random_bool(0.2).then(|| rng.random_range(0..6))).collect();
    let t0 = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (base, p, exp, quit) = (base.clone(), ps[i % ps.len()].clone(), exp.clone(), plan[i]);
            std::thread::spawn(move || -> Result<Option<f64>, String> {
                let start = Instant::now();
                let mut r = client::post_json(&base, "/v1/chat/completions", &p.body(true), T)
                    .map_err(|e| format!("request {i}: {e}"))?;
                if r.status != 200 {
                    return Err(format!("request {i}: status {}", r.status));
                }
                if let Some(k) = quit {
                    for _ in 0..k {
                        r.next_event().map_err(|e| format!("request {i}: {e}"))?;
                    }
                    r.abort();
                    return Ok(None);
                }
                let (chunks, done) = read_stream(r);
                let e = &exp[i % exp.len()];
                if !done || check_chunks(&chunks, e) != e.text {
                    return Err(format!("request {i}: the stream differs from the request alone"));
                }
                Ok(Some(start.elapsed().as_secs_f64()))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wall = t0.elapsed();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let mut lat: Vec<f64> = results.iter().filter_map(|r| r.as_ref().ok().copied().flatten()).collect();
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| lat[((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "load: {n} streaming requests, all concurrent, {} disconnected early, {} completed in {:.2} s: \
         latency p50 {:.3} s, p99 {:.3} s; errors: {}",
        plan.iter().flatten().count(),
        lat.len(),
        wall.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(wall < Duration::from_secs(90), "the load took {wall:?}");
    wait_idle(&base);
    assert!(metric(&base, "lumen_kv_blocks_total") > 0.0);
    assert!(metric(&base, "lumen_time_to_first_token_seconds_count") >= lat.len() as f64);
    server.shutdown().unwrap();
}

fn expect_error(r: Response, status: u16, needle: &str) -> Value {
    assert_eq!(r.status, status, "expected {status} for {needle:?}");
    let v = r.json().unwrap();
    let msg = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message in {v}"));
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(v["error"]["type"].is_string());
    assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());
    v
}

#[test]
fn bad_input_gets_a_clear_4xx_and_the_server_stays_healthy() {
    let (server, base) = start(ServeConfig { max_body_bytes: 1 << 20, ..ServeConfig::default() });
    let post = |body: &[u8]| client::send(&base, "POST", "/v1/chat/completions", Some(("application/json", body)), T);
    let good = Prompt { text: "hello".into(), image: None, max_tokens: 3 };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = good.body(false);
        f(&mut b);
        b.to_string().into_bytes()
    };
    let image = |url: String| {
        with(&move |b: &mut Value| {
            b["messages"][0]["content"] = json!([{"type": "image_url", "image_url": {"url": url.clone()}}]);
        })
    };
    let not_image =
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"plain text"));
    let huge = vec![b' '; 3 << 20];
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{\"messages\": [".to_vec(), 400, "not valid JSON"),
        (b"[]".to_vec(), 400, "JSON object"),
        (with(&|b| b["temperature"] = json!("hot")), 400, "`temperature` must be a number"),
        (with(&|b| b["messages"] = json!({"role": "user"})), 400, "`messages` must be an array"),
        (with(&|b| b["messages"][0]["content"] = json!(7)), 400, "messages[0].content"),
        (with(&|b| b["max_tokens"] = json!(-1)), 400, "at least 1"),
        (with(&|b| b["n"] = json!(3)), 400, "n = 1"),
        (with(&|b| b["max_tokens"] = json!(5000)), 400, "context"),
        (huge, 413, "limit"),
        (image(not_image), 400, "not a PNG or JPEG"),
        (image("http://example.com/cat.png".into()), 400, "not fetched"),
        (image("file:///etc/hostname".into()), 400, "--allow-local-files"),
        (image("data:image/png;base64,%%%".into()), 400, "base64"),
    ];
    for (body, status, needle) in cases {
        expect_error(post(&body).unwrap(), status, needle);
        assert_eq!(client::get(&base, "/health", T).unwrap().status, 200);
    }
    expect_error(client::get(&base, "/v2/nothing", T).unwrap(), 404, "no such endpoint");
    // The server still answers well-formed requests.
    let v = client::post_json(&base, "/v1/chat/completions", &good.body(false), T).unwrap().json().unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    assert_eq!(metric(&base, "lumen_requests_total{outcome=\"invalid\"}"), 13.0);
    server.shutdown().unwrap();
}

#[test]
fn requests_beyond_the_queue_bound_get_429_and_disconnects_free_their_blocks() {
    let cfg = ServeConfig { max_queue: 1, ..ServeConfig::default() };
    let cfg = ServeConfig { batch: lumen::engine::batch::BatchOptions { max_seqs: 1, ..cfg.batch }, ..cfg };
    let (server, base) = start(cfg);
    let long = Prompt { text: "tell me a long story".into(), image: None, max_tokens: 900 };
    let mut body = long.body(true);
    body["ignore_eos"] = json!(true);
    let mut a = client::post_json(&base, "/v1/chat/completions", &body, T).unwrap();
    assert_eq!(a.status, 200);
    for _ in 0..3 {
        a.next_event().unwrap();
    }
    let b = client::post_json(&base, "/v1/chat/completions", &body, T).unwrap();
    assert_eq!(b.status, 200);
    let v = expect_error(client::post_json(&base, "/v1/chat/completions", &body, T).unwrap(), 429, "capacity");
    assert_eq!(v["error"]["code"], "queue_full");
    assert!(metric(&base, "lumen_kv_blocks_in_use") > 0.0);
    a.abort();
    b.abort();
    wait_idle(&base);
    // Slots come back once the handlers notice; then requests are admitted again.
    let t0 = Instant::now();
    loop {
        let r =
            client::post_json(&base, "/v1/chat/completions", &Prompt { max_tokens: 2, ..long.clone() }.body(false), T)
                .unwrap();
        if r.status == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "still refused: {}", r.status);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client waiting for a non-streamed answer that goes away frees its sequence too.
    let mut body = long.body(false);
    body["ignore_eos"] = json!(true);
    let body = body.to_string();
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Gauges are refreshed after each engine step, so a scrape may still show the request
    // before; the token counter only grows once this request (the only one left) produces.
    let generated = metric(&base, "lumen_generation_tokens_total");
    std::io::Write::write_all(&mut raw, (head + &body).as_bytes()).unwrap();
    let t0 = Instant::now();
    while metric(&base, "lumen_generation_tokens_total") == generated {
        assert!(t0.elapsed() < Duration::from_secs(10), "the request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(raw);
    wait_idle(&base);
    let cancelled = metric(&base, "lumen_requests_total{outcome=\"cancelled\"}");
    assert_eq!(cancelled, 3.0, "a, b and the non-streamed request were cancelled");
    assert_eq!(metric(&base, "lumen_requests_total{outcome=\"completed\"}"), 1.0);
    server.shutdown().unwrap();
}

#[test]
fn shutdown_lets_in_flight_streams_finish() {
    let (server, base) = start(ServeConfig::default());
    let p = Prompt { text: "hello".into(), image: None, max_tokens: 40 };
    let mut body = p.body(true);
    body["ignore_eos"] = json!(true);
    let mut r = client::post_json(&base, "/v1/chat/completions", &body, T).unwrap();
    r.next_event().unwrap();
    let addr = server.addr;
    let stopper = std::thread::spawn(move || server.shutdown());
    let (chunks, done) = read_stream(r);
    assert!(done, "the in-flight stream finishes");
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 40);
    stopper.join().unwrap().unwrap();
    assert!(std::net::TcpStream::connect(addr).is_err(), "the server stopped listening");
}

#[test]
fn the_openai_python_client_streams_an_answer_with_an_image() {
    let Some(python) = std::env::var_os("LUMEN_OPENAI_PYTHON") else {
        println!("SKIPPED: set LUMEN_OPENAI_PYTHON to a python with the `openai` package to run this test");
        return;
    };
    let has = std::process::Command::new(&python).args(["-c", "import openai"]).status();
    assert!(has.is_ok_and(|s| s.success()), "LUMEN_OPENAI_PYTHON={python:?} cannot import openai");
    let (server, base) = start(ServeConfig::default());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(format!("{}/v1", base.display()))
        .arg(image_path("chelsea_crop_80x112.png"))
        .output()
        .unwrap();
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai client script failed");
    server.shutdown().unwrap();
}

#[test]
fn the_bench_load_generator_drives_a_server_over_http() {
    use lumen::bench::http::HttpServe;
    use lumen::bench::load::{self, Job, Params};
    use lumen::engine::serve::Serve;
    use lumen::model::qwen3_vl::PrefillInputs;
    let ps = prompts();
    let exp = alone(&ps[..6].iter().map(|p| Prompt { max_tokens: 6, ..p.clone() }).collect::<Vec<_>>());
    let (server, base) = start(ServeConfig::default());
    let chats: Vec<Value> = ps[..6].iter().map(|p| p.body(false)["messages"].clone()).collect();
    let mut eng = HttpServe::connect(&base.display(), chats).unwrap();
    assert_eq!(eng.model, "tiny");
    let jobs: Vec<Job> =
        (0..6).map(|i| Job { sample: i, inputs: Ok(PrefillInputs { ids: vec![], images: vec![] }) }).collect();
    let params = Params { max_new_tokens: 6, ..Default::default() };
    let run = load::offline(&mut eng, &jobs, &params, &indicatif::ProgressBar::hidden()).unwrap();
    for (r, e) in run.records.iter().zip(&exp) {
        assert_eq!(r.error, None);
        assert_eq!(r.tokens.len(), e.tokens, "tokens counted from the stream");
        assert!(r.done.is_some() && (e.tokens == 0 || r.first_token.is_some()));
    }
    assert_eq!(eng.pending(), 0);
    server.shutdown().unwrap();
}
