//! The batching engine: many concurrent requests of mixed lengths (some with images) give the
//! same greedy tokens as each request run alone, through chunked prefill and a paged KV
//! cache; when the cache runs out sequences are preempted and recomputed and every request
//! still completes; no cache block leaks; a bad request fails alone.

mod common;

use lumen::backend::cpu::CpuBackend;
use lumen::backend::Backend;
use lumen::engine::batch::{BatchOptions, Batched};
use lumen::engine::serve::{Event, Request, Serve};
use lumen::engine::{GenerateOptions, Session};
use lumen::io::chat::{Message, Part};
use lumen::model::processor::Processor;
use lumen::model::qwen3_vl::{PrefillInputs, Qwen3VL};
use std::collections::BTreeMap;
use std::path::Path;

fn fixture(name: &str) -> (Qwen3VL, Processor) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let m = Qwen3VL::load(&dir).unwrap();
    let p = Processor::from_dir(&dir, &m.config).unwrap();
    (m, p)
}

/// Six requests: text prompts of 3 to 40 words and two with images of different sizes.
fn requests(p: &Processor, max_new: &[usize]) -> Vec<Request> {
    let img = |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(f);
    let words = "the quick brown fox jumps over a lazy dog while seven small birds sing in old trees";
    let mut out = Vec::new();
    for (i, &n) in max_new.iter().enumerate() {
        let text: String = words.split(' ').cycle().skip(i * 3).take(3 + i * 7).collect::<Vec<_>>().join(" ");
        let mut content = Vec::new();
        let mut images = Vec::new();
        if i % 3 == 1 {
            content.push(Part::Image);
            let f = if i == 1 { "chelsea_crop_40x30.png" } else { "chelsea_crop_80x112.png" };
            images = p.load_images(&[img(f)]).unwrap();
        }
        content.push(Part::Text(text));
        let prompt: PrefillInputs = p.prepare(&[Message::new("user", content)], images).unwrap();
        out.push(Request { id: i as u64, prompt, max_new_tokens: n, stop: vec![], sampling: Default::default() });
    }
    out
}

fn run_all(engine: &mut dyn Serve, reqs: &[Request]) -> BTreeMap<u64, Result<Vec<u32>, String>> {
    for r in reqs {
        engine.submit(r.clone()).unwrap();
    }
    let mut out: BTreeMap<u64, Result<Vec<u32>, String>> = reqs.iter().map(|r| (r.id, Ok(vec![]))).collect();
    let mut steps = 0;
    while engine.pending() > 0 {
        for e in engine.step().unwrap() {
            match e {
                Event::Token { id, token } => out.get_mut(&id).unwrap().as_mut().unwrap().push(token),
                Event::Failed { id, error } => {
                    out.insert(id, Err(error));
                }
                Event::Done { .. } => {}
            }
        }
        steps += 1;
        assert!(steps < 10_000, "the engine does not finish");
    }
    out
}

fn alone(b: &dyn Backend, m: Qwen3VL, reqs: &[Request]) -> BTreeMap<u64, Vec<u32>> {
    let mut s = Session::new(b, m);
    reqs.iter()
        .map(|r| {
            let opts = GenerateOptions { max_new_tokens: r.max_new_tokens, sampling: Default::default(), stop: vec![] };
            (r.id, s.generate(&r.prompt, &opts, |_| true).unwrap().0)
        })
        .collect()
}

fn check_backend(b: &dyn Backend) {
    for model in ["qwen3vl-dense", "qwen3vl-moe"] {
        let (m, p) = fixture(model);
        let reqs = requests(&p, &[5, 7, 3, 9, 4, 6]);
        let want = alone(b, fixture(model).0, &reqs);
        let mut session = Session::new(b, m);
        for (opts, label) in [
            (BatchOptions { max_seqs: 1, token_budget: 512, block_size: 16, kv_blocks: 0 }, "one at a time"),
            (BatchOptions { max_seqs: 4, token_budget: 24, block_size: 4, kv_blocks: 0 }, "4 sequences, chunks of 24"),
            // Room for about two sequences: preemption and recomputation.
            (BatchOptions { max_seqs: 6, token_budget: 64, block_size: 4, kv_blocks: 40 }, "6 sequences, small cache"),
        ] {
            let mut engine = Batched::new(&mut session, opts).unwrap();
            let got = run_all(&mut engine, &reqs);
            let stats = engine.stats();
            println!("{} {model} {label}: {stats:?}", b.info().backend);
            for r in &reqs {
                assert_eq!(got[&r.id].as_ref().unwrap(), &want[&r.id], "{model} {label}: request {} differs", r.id);
            }
            let (free, total) = engine.blocks();
            assert_eq!(free, total, "{model} {label}: cache blocks leaked");
            if opts.kv_blocks == 40 {
                assert!(stats.preemptions > 0, "{model}: the small cache never preempted ({stats:?})");
            }
            if opts.max_seqs == 4 {
                assert!(stats.peak_batch > 1, "{model}: never batched ({stats:?})");
            }
            // Decode steps of an unchanged batch repeat the previous step's graph structure:
            // those are retyped, not compiled (and the answers above are still each alone's).
            assert!(stats.retyped_steps > 0, "{model} {label}: no step was retyped ({stats:?})");
        }
    }
}

#[test]
fn concurrent_requests_match_each_alone_on_cpu() {
    check_backend(&CpuBackend::new());
}

#[test]
fn concurrent_requests_match_each_alone_on_wgpu() {
    if let Some(w) = common::wgpu() {
        check_backend(w);
    }
}

#[test]
fn a_bad_request_fails_alone() {
    let (m, p) = fixture("qwen3vl-dense");
    let b = CpuBackend::new();
    let mut reqs = requests(&p, &[3, 3, 3]);
    let vocab = m.config.text.vocab_size as u32;
    reqs[1].prompt.ids.push(vocab + 5);
    let mut long = reqs[0].clone();
    long.id = 7;
    long.max_new_tokens = 1 << 30;
    reqs.push(long);
    let mut session = Session::new(&b, m);
    let mut engine = Batched::new(&mut session, BatchOptions::default()).unwrap();
    let got = run_all(&mut engine, &reqs);
    assert!(got[&1].as_ref().unwrap_err().contains("outside the vocabulary"), "{:?}", got[&1]);
    assert!(got[&7].as_ref().unwrap_err().contains("context"), "{:?}", got[&7]);
    for id in [0, 2] {
        assert_eq!(got[&id].as_ref().unwrap().len(), 3);
    }
    assert_eq!(engine.blocks().0, engine.blocks().1);
}

#[test]
fn cancelling_frees_the_blocks_at_once_and_the_rest_goes_on() {
    let (m, p) = fixture("qwen3vl-dense");
    let b = CpuBackend::new();
    let reqs = requests(&p, &[6, 6, 6]);
    let want = alone(&b, fixture("qwen3vl-dense").0, &reqs);
    let mut session = Session::new(&b, m);
    let mut engine = Batched::new(&mut session, BatchOptions::default()).unwrap();
    for r in &reqs {
        engine.submit(r.clone()).unwrap();
    }
    let mut got: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for e in engine.step().unwrap().into_iter().chain(engine.step().unwrap()) {
        if let Event::Token { id, token } = e {
            got.entry(id).or_default().push(token);
        }
    }
    let (free, total) = engine.blocks();
    assert!(free < total);
    assert!(engine.cancel(1) && !engine.cancel(1) && !engine.cancel(99));
    assert!(engine.blocks().0 > free, "cancelling returned no blocks");
    while engine.pending() > 0 {
        for e in engine.step().unwrap() {
            match e {
                Event::Token { id, token } => got.entry(id).or_default().push(token),
                Event::Failed { id, .. } => panic!("request {id} failed"),
                Event::Done { .. } => {}
            }
        }
    }
    assert!(got[&1].len() < 6, "request 1 kept going after its cancel");
    assert_eq!(got[&0], want[&0]);
    assert_eq!(got[&2], want[&2]);
    assert_eq!(engine.blocks().0, total);
}
