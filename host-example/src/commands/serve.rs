//! `serve`: SCIM 2.0 from a SQLite directory (the Joomla side).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use host_example::store::Store;

use crate::app::{load_runtime, log_sink};

/// Serves until the process is stopped. The token comes from `token_env`, else from the
/// database, where one is generated and kept the first time.
pub fn run(
    component: Option<&Path>,
    verbose: bool,
    listen: &str,
    database: &Path,
    token_env: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let runtime = load_runtime(component)?;
    let token = match token_env {
        Some(var) => std::env::var(var)
            .ok()
            .filter(|t| !t.is_empty())
            .with_context(|| format!("environment variable {var} is not set"))?,
        None => {
            let mut store = Store::open(database)?;
            match store.meta("server_token")? {
                Some(t) => t,
                None => {
                    let t = host_example::serve::generate_token();
                    store.set_meta("server_token", &t)?;
                    t
                }
            }
        }
    };
    let server = host_example::serve::start(
        &runtime,
        database,
        listen,
        &token,
        "",
        log_sink(verbose).redact([token.clone()]),
    )?;
    println!("SCIM base URL:     {}", server.base_url);
    println!("SCIM bearer token: {}", server.token);
    println!("serving {} (Ctrl-C stops)", database.display());
    server.wait();
    Ok(ExitCode::SUCCESS)
}
