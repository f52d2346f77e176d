//! Every shader under `shaders/` parses and validates with naga in every binding signature the
//! backend can generate, and translates to SPIR-V, MSL and HLSL, so a shader that Metal or DX12
//! would reject fails here although CI has neither.

use lumen::backend::wgpu::shaders::{assemble, validate, FAMILIES, REDUCE};
use lumen::backend::wgpu::Signature;
use lumen::graph::DType;
use naga::back::{hlsl, msl, spv};

const DTYPES: [DType; 4] = [DType::F32, DType::BF16, DType::F16, DType::I32];

fn translate(label: &str, module: &naga::Module, info: &naga::valid::ModuleInfo) {
    spv::write_vec(module, info, &spv::Options::default(), None).unwrap_or_else(|e| panic!("{label}: SPIR-V: {e}"));
    msl::write_string(module, info, &msl::Options::default(), &msl::PipelineOptions::default())
        .unwrap_or_else(|e| panic!("{label}: MSL: {e}"));
    let mut out = String::new();
    hlsl::Writer::new(&mut out, &hlsl::Options::default(), &hlsl::PipelineOptions::default())
        .write(module, info, None)
        .unwrap_or_else(|e| panic!("{label}: HLSL: {e}"));
}

#[test]
fn every_shader_validates_and_translates_in_every_signature() {
    let mut n = 0;
    for f in FAMILIES {
        for &dt in &DTYPES {
            for chunks in [1, 3] {
                for &out in &DTYPES {
                    let sig = Signature {
                        inputs: vec![(dt, chunks); f.inputs],
                        output: (out, chunks),
                        side: f.side.then_some((out, chunks)),
                        chunk_words: 1 << 20,
                    };
                    let label = format!("{} {sig:?}", f.name);
                    let src = assemble(f, &sig);
                    let (module, info) = validate(&label, &src).unwrap_or_else(|e| panic!("{e}"));
                    for e in f.entries {
                        assert!(module.entry_points.iter().any(|p| p.name == *e), "{label}: no entry point {e}");
                    }
                    translate(&label, &module, &info);
                    n += 1;
                }
            }
        }
    }
    println!("validated and translated {n} shader modules ({} families) to SPIR-V, MSL and HLSL", FAMILIES.len());
}

#[test]
fn every_wgsl_file_is_a_known_family_and_the_reductions_parse_alone() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".wgsl") else { continue };
        // A family's body, or a piece some family places before its body (weight hooks).
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let used = FAMILIES.iter().any(|f| f.source == text || f.prefix.contains(text.as_str()));
        assert!(
            stem == "reduce" || stem == "activations" || stem == "program" || used,
            "shaders/{name} is not registered in src/backend/wgpu/shaders.rs"
        );
    }
    let (m, i) = validate("reduce", REDUCE).unwrap();
    translate("reduce", &m, &i);
}
