//! `host-example`: the command line of the wasmtime sample host.
//!
//! The binary only parses arguments ([`cli`]), opens what a command needs ([`app`]) and
//! prints; each command family lives in [`commands`]. The work itself is the library's
//! (`host_example`), which returns data and never prints, so other hosts can reuse it.

mod app;
mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match commands::run(cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
