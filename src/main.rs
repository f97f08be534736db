//! `copains`: one binary, every role. `copains serve` runs them all in one process;
//! `copains api` runs one role for a scaled deployment; `migrate` and `admin …` manage the
//! instance. See `copains --help`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod cli;
mod config;
mod embedded_pg;
mod listen;
mod node_id;
mod serve;
mod shutdown;
mod voice;
mod web;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("copains: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("copains: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
