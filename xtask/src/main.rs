//! Project tasks: `cargo xtask <task>`.
//!
//! - `lint`: `cargo fmt --check` and `cargo clippy --all-targets -- -D warnings`.
//! - `test`: the README's test command with `LUMEN_REQUIRE_GPU_ADAPTER=1`, as CI runs it.
//! - `shaders DIR`: writes every shader family, assembled for f32 and bf16 bindings, to DIR
//!   for reading or feeding to other tools.

use std::process::{exit, Command};

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> bool {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    eprintln!("$ cargo {}", args.join(" "));
    match c.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            false
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ok = match args.first().map(String::as_str) {
        Some("lint") => {
            cargo(&["fmt", "--all", "--", "--check"], &[])
                && cargo(&["clippy", "--release", "--all-targets", "--", "-D", "warnings"], &[])
        }
        Some("test") => cargo(&["test", "--release", "--", "--show-output"], &[("LUMEN_REQUIRE_GPU_ADAPTER", "1")]),
        Some("shaders") => {
            let Some(dir) = args.get(1) else {
                eprintln!("usage: cargo xtask shaders DIR");
                exit(2)
            };
            cargo(&["run", "--release", "--example", "dump_shaders", "--", dir], &[])
        }
        other => {
            if let Some(t) = other {
                eprintln!("xtask: unknown task `{t}`");
            }
            eprintln!("usage: cargo xtask lint | test | shaders DIR");
            exit(2)
        }
    };
    exit(if ok { 0 } else { 1 })
}
