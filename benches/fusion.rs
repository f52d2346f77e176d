//! Fused vs as-built graphs, side by side in one run: one decoder layer (dense and MoE; a
//! decode step and prefills) and one vision block, on the CPU oracle and on wgpu (whatever
//! adapter this machine has: lavapipe in CI). Prints kernels, peak activation memory and the
//! median time of each, and the ratio as-built / fused. Run: `cargo xtask bench-ops` (or
//! `cargo bench --bench fusion`); `LUMEN_BENCH_SECONDS` sets the time per measurement,
//! `LUMEN_BENCH_FILTER` keeps the cases whose name (or backend) contains it.

use lumen::backend::cpu::CpuBackend;
use lumen::backend::wgpu::{WgpuBackend, WgpuOptions};
use lumen::backend::{Backend, BufferId};
use lumen::compile::report::Summary;
use lumen::compile::{compile, Options};
use lumen::exec::Executor;
use lumen::graph::{Graph, NodeId};
use lumen::model::qwen3_vl::{DecodeGraph, Pixels, PrefillGraph, PrefillInputs, Qwen3VL, VisionGraph};
use lumen::model::synthetic::{self, SyntheticSpec};
use lumen::HostTensor;
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Case {
    name: String,
    graph: Graph,
    out: NodeId,
    keep: Vec<NodeId>,
    weights: Vec<String>,
    data: Vec<(String, HostTensor)>,
}

fn pixels(gh: usize, gw: usize) -> Pixels {
    let n = gh * gw;
    let dim = 3 * 2 * 16 * 16;
    let data = (0..n * dim).map(|i| ((i as u32).wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0).collect();
    Pixels { data, grid_thw: [1, gh, gw] }
}

fn cases(m: &Qwen3VL, label: &str) -> Vec<Case> {
    let cfg = &m.config.text;
    let mut v = Vec::new();
    let past = 64;
    let d = DecodeGraph::build(m, 7, past, 0).unwrap();
    let mut data = d.data.clone();
    for (k, vv) in &d.kv_inputs {
        let z = HostTensor::from_f32(
            lumen::graph::DType::F32,
            [cfg.num_kv_heads, past, cfg.head_dim],
            &vec![0.01; cfg.num_kv_heads * past * cfg.head_dim],
        )
        .unwrap();
        data.push((k.clone(), z.clone()));
        data.push((vv.clone(), z));
    }
    let keep = d.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
    v.push(Case {
        name: format!("{label} 1 layer decode, past {past}"),
        graph: d.graph,
        out: d.logits,
        keep,
        weights: d.weights,
        data,
    });
    for t in [32, 128] {
        let ids: Vec<u32> = (0..t as u32).map(|i| 1 + i % 200).collect();
        let p = PrefillGraph::build(m, &PrefillInputs { ids, images: vec![] }, false).unwrap();
        let keep = p.kv.iter().flat_map(|(k, v)| [*k, *v]).collect();
        v.push(Case {
            name: format!("{label} 1 layer prefill {t}"),
            graph: p.graph,
            out: p.logits,
            keep,
            weights: p.weights,
            data: p.data,
        });
    }
    if label == "dense" {
        for (gh, gw) in [(8, 8), (16, 16)] {
            let g = VisionGraph::build(m, &[pixels(gh, gw)]).unwrap();
            v.push(Case {
                name: format!("vision tower 1 block, {} patches", gh * gw),
                graph: g.graph,
                out: g.embeds,
                keep: vec![],
                weights: g.weights,
                data: g.data,
            });
        }
    }
    v
}

fn executor<'b>(b: &'b dyn Backend, c: &Case, fuse: bool, w: &HashMap<String, BufferId>) -> Executor<'b> {
    let mut ex = Executor::with_options(b, c.graph.clone(), &c.keep, Options { fuse }).unwrap();
    for n in &c.weights {
        ex.bind(n, w[n]).unwrap();
    }
    for (n, t) in &c.data {
        ex.set(n, t).unwrap();
    }
    ex
}

fn once(ex: &mut Executor, out: NodeId) -> Duration {
    let t0 = Instant::now();
    ex.run().unwrap();
    ex.read(out).unwrap();
    t0.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let budget = std::env::var("LUMEN_BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.5);
    let root = std::env::temp_dir().join(format!("lumen-bench-fusion-{}", std::process::id()));
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend::new())];
    match WgpuBackend::new(&WgpuOptions::default()) {
        Ok(w) => backends.push(Box::new(w)),
        Err(e) => println!("wgpu: no adapter ({e}); cpu only"),
    }
    println!(
        "{:<34} {:<6} {:>15} {:>21} {:>10} {:>10} {:>7}",
        "case", "backend", "kernels", "peak activations", "as built", "fused", "ratio"
    );
    for (label, spec) in [("dense", SyntheticSpec::small_dense()), ("moe", SyntheticSpec::small_moe())] {
        let dir = root.join(label);
        synthetic::write(&dir, &spec, 7).unwrap();
        let m = Qwen3VL::load(&dir).unwrap();
        let cases = cases(&m, label);
        for b in &backends {
            let b = b.as_ref();
            let mut w = HashMap::new();
            for c in &cases {
                for n in &c.weights {
                    if !w.contains_key(n) {
                        let buf = m.weights.get(n).unwrap().to_device(b).unwrap();
                        w.insert(n.clone(), buf);
                    }
                }
            }
            let filter = std::env::var("LUMEN_BENCH_FILTER").unwrap_or_default();
            for c in cases.iter().filter(|c| format!("{} {}", c.name, b.info().backend).contains(&filter)) {
                let sf = Summary::of(&compile(&c.graph, &c.keep, b, Options::default()).unwrap());
                let sp = Summary::of(&compile(&c.graph, &c.keep, b, Options { fuse: false }).unwrap());
                let mut fused = executor(b, c, true, &w);
                let mut plain = executor(b, c, false, &w);
                once(&mut fused, c.out);
                once(&mut plain, c.out);
                // Alternate the two so drift (clocks, other load) hits both alike.
                let (mut tf, mut tp) = (Vec::new(), Vec::new());
                let t0 = Instant::now();
                while tf.len() < 3 || t0.elapsed().as_secs_f64() < budget {
                    tp.push(once(&mut plain, c.out));
                    tf.push(once(&mut fused, c.out));
                    if tf.len() >= 200 {
                        break;
                    }
                }
                let (mp, mf) = (median(tp), median(tf));
                println!(
                    "{:<34} {:<6} {:>6} -> {:<6} {:>8.1} -> {:<8.1}KiB {:>8.2}ms {:>8.2}ms {:>6.2}x",
                    c.name,
                    b.info().backend,
                    sp.kernels,
                    sf.kernels,
                    sp.peak_bytes as f64 / 1024.0,
                    sf.peak_bytes as f64 / 1024.0,
                    mp.as_secs_f64() * 1e3,
                    mf.as_secs_f64() * 1e3,
                    mp.as_secs_f64() / mf.as_secs_f64()
                );
            }
            for buf in w.values() {
                b.free(*buf);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
