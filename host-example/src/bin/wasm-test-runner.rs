//! Runs a `wasm32-wasip2` test binary (a `wasi:cli/command` component) under wasmtime with
//! WASI and the scim-provisioner imports linked, so the core's unit tests run inside the
//! component runtime. Cargo calls it as the target runner:
//!
//! ```text
//! CARGO_TARGET_WASM32_WASIP2_RUNNER=target/debug/wasm-test-runner \
//!   cargo test --target wasm32-wasip2 -p scim-provisioner
//! ```
//!
//! The guest gets stdio, arguments and environment, but no files and no network: its HTTP
//! import denies every request.

use std::process::ExitCode;

use anyhow::Context;
use host_example::http::{HttpCapability, OriginPolicy};
use host_example::logging::{Level, LogSink};
use host_example::{HostState, add_to_linker};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::bindings::sync::Command;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasm-test-runner: {e:#}");
            ExitCode::from(101)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let wasm = args
        .next()
        .context("usage: wasm-test-runner <component.wasm> [args...]")?;
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, &wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {wasm}"))?;
    let mut linker = Linker::new(&engine);
    add_to_linker(&mut linker)?;

    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio()
        .arg(&wasm)
        .args(&args.collect::<Vec<_>>());
    for (k, v) in std::env::vars() {
        wasi.env(&k, &v);
    }
    let state = HostState::with_wasi(
        wasi.build(),
        HttpCapability::new(OriginPolicy::deny_all()),
        LogSink::stderr(Level::Warn),
    );
    let mut store = Store::new(&engine, state);
    let command = Command::instantiate(&mut store, &component, &linker)?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(())) => Ok(ExitCode::FAILURE),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(ExitCode::from(u8::try_from(exit.0).unwrap_or(1))),
            None => Err(e.into()),
        },
    }
}
