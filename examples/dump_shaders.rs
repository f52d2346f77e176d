//! Writes every shader family, assembled with its prelude for f32 and for bf16 bindings, to a
//! directory: `cargo run --example dump_shaders -- out/`.

use lumen::backend::wgpu::shaders::{assemble, FAMILIES};
use lumen::backend::wgpu::Signature;
use lumen::graph::DType;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: dump_shaders DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir)?;
    for f in FAMILIES {
        for (tag, dt) in [("f32", DType::F32), ("bf16", DType::BF16)] {
            let sig = Signature {
                inputs: vec![(dt, 1); f.inputs],
                output: (dt, 1),
                side: f.side.then_some((dt, 1)),
                chunk_words: 1 << 25,
            };
            let path = format!("{dir}/{}_{tag}.wgsl", f.name);
            std::fs::write(&path, assemble(f, &sig))?;
            println!("{path}");
        }
    }
    Ok(())
}
