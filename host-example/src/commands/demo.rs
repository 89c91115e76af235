//! `demo`: the seed's whole story on this machine, told line by line.

use std::path::Path;
use std::process::ExitCode;

use crate::app::load_runtime;

/// Runs the demo; fails when a result did not match.
pub fn run(component: Option<&Path>) -> anyhow::Result<ExitCode> {
    let runtime = load_runtime(component, None, false)?;
    let all_ok = host_example::demo::run_with(&runtime, &mut |event| println!("{event}"))?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
