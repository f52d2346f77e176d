//! Host time of one decode step before any kernel runs, at a real-shape preset: building and
//! compiling the step's graph from scratch, against retyping the previous step's compiled graph
//! (what a session does from its second step on). No weights are made or uploaded.
//!
//! `cargo run --release --example decode_host_cost -- qwen3-vl-8b [PAST]`

use lumen::backend::cpu::CpuBackend;
use lumen::compile::{compile, reshape, Options};
use lumen::graph::TensorDesc;
use lumen::model::qwen3_vl::DecodeGraph;
use lumen::model::synthetic::SyntheticSpec;
use std::time::Instant;

fn main() -> lumen::Result<()> {
    let mut args = std::env::args().skip(1);
    let preset = args.next().unwrap_or_else(|| "qwen3-vl-8b".into());
    let past: usize = args.next().and_then(|p| p.parse().ok()).unwrap_or(2048);
    let m = SyntheticSpec::preset(&preset)?.model(1)?;
    let be = CpuBackend::new();
    let keep = |dg: &DecodeGraph| dg.kv.iter().flat_map(|(k, v)| [*k, *v]).collect::<Vec<_>>();
    let first = DecodeGraph::build(&m, 5, past, 0)?;
    let compiled = compile(&first.graph, &keep(&first), &be, Options::default())?;
    println!(
        "{preset}: decode step graph of {} nodes ({} compiled)",
        first.graph.nodes().len(),
        compiled.graph.nodes().len()
    );
    for p in past + 1..past + 6 {
        let t0 = Instant::now();
        let dg = DecodeGraph::build(&m, 5, p, 0)?;
        compile(&dg.graph, &keep(&dg), &be, Options::default())?;
        let fresh = t0.elapsed();
        let t0 = Instant::now();
        let g = &compiled.graph;
        let mut inputs = Vec::new();
        for name in first.kv_inputs.iter().flat_map(|(k, v)| [k, v]) {
            let id = g.input(name).expect("a KV input");
            let d = &g.node(id).desc;
            let mut dims = d.shape.0.clone();
            dims[1] = p;
            inputs.push((id, TensorDesc::new(d.dtype, dims)));
        }
        DecodeGraph::step_data(&m, 5, p, 0)?;
        let step = reshape(&compiled, &inputs, &be).expect("the step retypes");
        let _for_the_executor = step.clone();
        println!("past {p}: build + compile {fresh:.2?}, retype {:.2?}", t0.elapsed());
    }
    Ok(())
}
