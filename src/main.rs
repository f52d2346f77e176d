//! The `lumen` command line: a thin shell over the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "lumen", version, about = "Run vision-language models on any GPU")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every backend and adapter found, one line each.
    Devices,
    /// Pick a backend as `--backend` says and print which one and why.
    Select {
        /// auto, wgpu or cpu.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> lumen::Result<()> {
    match cli.cmd {
        Cmd::Devices => {
            for line in lumen::backend::device_lines() {
                println!("{line}");
            }
        }
        Cmd::Select { backend } => {
            let s = lumen::backend::select(&backend)?;
            println!("{}", s.reason);
            println!("{}", s.backend.info());
        }
    }
    Ok(())
}
