//! The embedding API on the tiny fixtures: answers equal `Session::generate` alone, requests
//! from many threads equal the same requests one at a time, cancel is prompt and the engine
//! serves the next request, a bad image fails its own request only.

use lumen::api::text::Answer;
use lumen::backend::cpu::CpuBackend;
use lumen::engine::{GenerateOptions, Session};
use lumen::io::chat::{Message, Part};
use lumen::model::processor::Processor;
use lumen::model::qwen3_vl::Qwen3VL;
use lumen::{
    ChatMessage, Content, Error, FinishReason, GenerationOptions, ImageSource, LoadOptions, LoadProgress, Lumen,
    ModelSource,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn image(name: &str) -> PathBuf {
    fixture("images").join(name)
}

fn backends() -> Vec<&'static str> {
    if std::env::var_os("LUMEN_REQUIRE_GPU_ADAPTER").is_some() {
        vec!["cpu", "wgpu"]
    } else {
        vec!["cpu"]
    }
}

fn load(model: &str, backend: &str) -> Lumen {
    let opts = LoadOptions { backend: backend.into(), ..Default::default() };
    Lumen::load(&ModelSource::dir(fixture(model)), &opts).unwrap()
}

/// A few prompts, some with images.
fn questions() -> Vec<(Vec<ChatMessage>, usize)> {
    let words = "a small red boat floats near the old stone pier at dawn";
    (0..6)
        .map(|i| {
            let mut content = Vec::new();
            if i % 3 == 1 {
                content.push(Content::image_path(image("chelsea_crop_40x30.png")));
            }
            content.push(Content::text(words.split(' ').skip(i).take(3 + i).collect::<Vec<_>>().join(" ")));
            (vec![ChatMessage::user(content)], 5 + i * 3)
        })
        .collect()
}

/// The text `Session::generate` gives for the same conversation alone (greedy).
fn alone(model: &str, messages: &[ChatMessage], max_tokens: usize) -> String {
    let dir = fixture(model);
    let m = Qwen3VL::load(&dir).unwrap();
    let proc = Processor::from_dir(&dir, &m.config).unwrap();
    let cpu = CpuBackend::new();
    let mut session = Session::new(&cpu, m);
    let mut parts = Vec::new();
    let mut paths = Vec::new();
    for c in &messages[0].content {
        match c {
            Content::Text(t) => parts.push(Part::Text(t.clone())),
            Content::Image(ImageSource::Path(p)) => {
                parts.push(Part::Image);
                paths.push(p.clone());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let inputs = proc.prepare(&[Message::new("user", parts)], proc.load_images(&paths).unwrap()).unwrap();
    let opts =
        GenerateOptions { max_new_tokens: max_tokens, sampling: Default::default(), stop: proc.stop_ids.clone() };
    let (ids, _) = session.generate(&inputs, &opts, |_| true).unwrap();
    let mut a = Answer::new(&proc.tokenizer, vec![]);
    let text: String = ids.iter().map(|&t| a.push(t).0).collect();
    text + &a.finish()
}

#[test]
fn a_loaded_model_is_send_sync_and_cheap_to_share() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Lumen>();
    fn sendable<T: Send>() {}
    sendable::<lumen::Generation>();
    sendable::<lumen::CancelHandle>();
}

#[test]
fn concurrent_requests_from_threads_equal_sequential_ones_and_the_session() {
    for model in ["qwen3vl-dense", "qwen3vl-moe"] {
        let qs = questions();
        let expected: Vec<String> = qs.iter().map(|(m, n)| alone(model, m, *n)).collect();
        for backend in backends() {
            let lumen = load(model, backend);
            let sequential: Vec<String> = qs
                .iter()
                .map(|(m, n)| lumen.generate(m, &GenerationOptions::greedy(*n)).unwrap().text().unwrap().text)
                .collect();
            assert_eq!(sequential, expected, "{model} on {backend}: one at a time");
            let threads: Vec<_> = qs
                .clone()
                .into_iter()
                .map(|(m, n)| {
                    let lumen = lumen.clone();
                    std::thread::spawn(move || {
                        lumen.generate(&m, &GenerationOptions::greedy(n)).unwrap().text().unwrap()
                    })
                })
                .collect();
            let together: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            for (i, c) in together.iter().enumerate() {
                assert_eq!(c.text, expected[i], "{model} on {backend}: request {i} among others");
                assert!(c.completion_tokens <= qs[i].1);
                assert_eq!(c.finish == FinishReason::Length, c.completion_tokens == qs[i].1);
            }
            println!("{model} on {backend}: {} concurrent answers equal", together.len());
        }
    }
}

#[test]
fn cancel_from_another_thread_is_prompt_and_the_engine_goes_on() {
    for backend in backends() {
        let lumen = load("qwen3vl-dense", backend);
        let q = vec![ChatMessage::user(vec![Content::text("tell me a long story")])];
        let long = GenerationOptions { max_tokens: Some(900), ignore_eos: true, ..Default::default() };
        let mut gen = lumen.generate(&q, &long).unwrap();
        let handle = gen.cancel_handle();
        let mut pieces = 0;
        let mut cancelled_at = None;
        for piece in &mut gen {
            piece.unwrap();
            pieces += 1;
            if pieces == 3 {
                let h = handle.clone();
                std::thread::spawn(move || h.cancel()).join().unwrap();
                cancelled_at = Some(Instant::now());
            }
        }
        let waited = cancelled_at.unwrap().elapsed();
        assert_eq!(gen.finish_reason(), Some(FinishReason::Cancelled));
        assert!(gen.completion_tokens() < 900, "{}", gen.completion_tokens());
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // The engine frees it and answers the next request in full.
        let next = lumen.generate(&q, &GenerationOptions::greedy(6)).unwrap().text().unwrap();
        assert!(next.completion_tokens > 0);
        assert_eq!(lumen.stats().cancelled, 1, "{backend}");
        // Dropping an unfinished generation cancels it too.
        let dropped = lumen.generate(&q, &long).unwrap();
        drop(dropped);
        let t0 = Instant::now();
        while lumen.stats().cancelled < 2 {
            assert!(t0.elapsed() < Duration::from_secs(10), "a dropped generation was never cancelled");
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("{backend}: cancelled after {pieces} pieces, {waited:?} after the call");
    }
}

#[test]
fn a_bad_image_fails_its_own_request_only() {
    let lumen = load("qwen3vl-dense", "cpu");
    let q = vec![ChatMessage::user(vec![Content::text("count to ten")])];
    let long = GenerationOptions { max_tokens: Some(40), ignore_eos: true, ..Default::default() };
    let good = lumen.generate(&q, &long).unwrap();
    let bad = |c: Content| lumen.generate(&[ChatMessage::user(vec![c, Content::text("what?")])], &long);
    let cases = [
        (Content::image_bytes(b"not an image".to_vec()), "not a usable image"),
        (Content::image_path("/no/such/image.png"), "no/such/image.png"),
        (Content::Image(ImageSource::Rgb { width: 4, height: 4, pixels: vec![0; 5] }), "3 bytes per pixel"),
    ];
    for (c, want) in cases {
        match bad(c) {
            Err(Error::Input(m)) => assert!(m.contains(want) && m.contains("message 0, part 0"), "{m}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a bad image was accepted"),
        }
    }
    let too_long = GenerationOptions::greedy(1 << 20);
    assert!(matches!(lumen.generate(&q, &too_long), Err(Error::Input(m)) if m.contains("at most")));
    assert!(matches!(lumen.generate(&[], &long), Err(Error::Input(_))));
    let c = good.text().unwrap();
    assert_eq!((c.completion_tokens, c.finish), (40, FinishReason::Length));
}

#[test]
fn decoded_rgb_pixels_answer_like_the_file_and_progress_is_reported() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let lumen = Lumen::load_with_progress(
        &ModelSource::dir(fixture("qwen3vl-dense")),
        &LoadOptions { backend: "cpu".into(), ..Default::default() },
        move |p| s.lock().unwrap().push(p),
    )
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first(), Some(&LoadProgress::SelectingBackend));
    assert!(seen.iter().any(|p| matches!(p, LoadProgress::Uploading { done, total } if done == total)));
    assert_eq!(seen.last(), Some(&LoadProgress::Starting));
    assert_eq!(lumen.info().backend_kind, "cpu");
    assert_eq!(lumen.info().name, "qwen3vl-dense");
    let path = image("chelsea_crop_80x112.png");
    let decoded = image::open(&path).unwrap().to_rgb8();
    let rgb = ImageSource::Rgb {
        width: decoded.width() as usize,
        height: decoded.height() as usize,
        pixels: decoded.into_raw(),
    };
    let bytes = ImageSource::Bytes(std::fs::read(&path).unwrap());
    let answers: Vec<String> = [ImageSource::Path(path), bytes, rgb]
        .into_iter()
        .map(|src| {
            let q = vec![ChatMessage::user(vec![Content::Image(src), Content::text("describe it")])];
            lumen.generate(&q, &GenerationOptions::greedy(8)).unwrap().text().unwrap().text
        })
        .collect();
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

#[test]
fn stop_strings_end_the_answer_and_free_the_sequence() {
    let lumen = load("qwen3vl-dense", "cpu");
    let q = vec![ChatMessage::user(vec![Content::text("say something")])];
    let full = lumen.generate(&q, &GenerationOptions::greedy(12)).unwrap().text().unwrap().text;
    let cut: String = full.chars().skip(3).take(2).collect();
    assert!(!cut.is_empty(), "{full:?}");
    let opts = GenerationOptions { stop: vec![cut.clone()], ..GenerationOptions::greedy(12) };
    let c = lumen.generate(&q, &opts).unwrap().text().unwrap();
    assert_eq!(c.finish, FinishReason::Stop);
    assert_eq!(c.text, full[..full.find(&cut).unwrap()]);
}
