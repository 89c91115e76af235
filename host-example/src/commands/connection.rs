//! `test-connection` and `get-user`: talking to the SCIM server directly.

use std::process::ExitCode;

use anyhow::Context;
use host_example::describe_error;
use host_example::types::ServerCapabilities;
use serde_json::Value;

use crate::app::App;

/// Tests the base URL and credentials and shows what the server supports.
pub fn test_connection(app: &App) -> anyhow::Result<ExitCode> {
    for warning in app.config.warnings(&app.settings) {
        println!("Warning: {warning}");
    }
    let runtime = app.runtime()?;
    let mut session = app.session(&runtime)?;
    let code = match session.test_connection()? {
        Ok(caps) => {
            println!("Connection successful: {}", app.settings.base_url);
            print_capabilities(&caps);
            for finding in host_example::dialect::findings(&session.export_dialect()?) {
                println!("  {finding}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("Connection failed: {}", describe_error(&e));
            ExitCode::FAILURE
        }
    };
    // Keep what the test learned with the connection; a test still works without a
    // writable store.
    if let Err(e) = app.store().and_then(|mut store| {
        host_example::dialect::save(&mut store, &mut session, &app.settings.base_url)
    }) {
        eprintln!("warning: the server's dialect was not stored: {e:#}");
    }
    Ok(code)
}

fn print_capabilities(caps: &ServerCapabilities) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    if !caps.discovered {
        println!("  (no /ServiceProviderConfig; assuming the conservative defaults)");
    }
    println!("  patch:          {}", yes(caps.patch));
    match &caps.bulk {
        Some(b) => println!(
            "  bulk:           yes (maxOperations {}, maxPayloadSize {})",
            b.max_operations, b.max_payload_size
        ),
        None => println!("  bulk:           no"),
    }
    match caps.filter_max_results {
        Some(n) => println!("  filter:         yes (maxResults {n})"),
        None => println!("  filter:         no"),
    }
    println!("  etag:           {}", yes(caps.etag));
    println!("  sort:           {}", yes(caps.sort));
    println!("  changePassword: {}", yes(caps.change_password));
}

/// Reads one remote user by SCIM id and prints it.
pub fn get_user(app: &App, id: &str) -> anyhow::Result<ExitCode> {
    let runtime = app.runtime()?;
    let mut session = app.session(&runtime)?;
    match session.get_user(id)? {
        Ok(Some(json)) => {
            let value: Value =
                serde_json::from_str(&json).context("the component returned invalid JSON")?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            println!("no remote user with id {id}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("{}", describe_error(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}
