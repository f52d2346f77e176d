//! The committed header is what cbindgen makes of the sources (LUMEN_BLESS=1 rewrites it).

use std::path::Path;

#[test]
fn the_committed_header_matches_the_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut made = Vec::new();
    cbindgen::generate_with_config(dir, config).unwrap().write(&mut made);
    let made = String::from_utf8(made).unwrap();
    let path = dir.join("include/lumen.h");
    if std::env::var_os("LUMEN_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == made,
        "capi/include/lumen.h is stale: run LUMEN_BLESS=1 cargo test -p lumen-capi --test header"
    );
}
