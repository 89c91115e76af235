//! `host-example daemon` processes for the tests that run several of them on one shared
//! database (issue 30: `outbox_workers`, `shared_reconcile`): the binary, a daemon killed
//! when the test lets go of it, a daemon configuration, waiting for a condition while the
//! daemons run, and reading every user back from the SCIM server.
//!
//! The database servers themselves are `host_example::database::test_support`'s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::{Peer, get_json, workspace_root};

/// The debug build of `host-example` (built beforehand: `cargo build -p host-example`).
pub fn host_example_bin() -> PathBuf {
    let bin = workspace_root().join("target/debug/host-example");
    assert!(
        bin.is_file(),
        "build it first: cargo build -p host-example ({})",
        bin.display()
    );
    bin
}

/// A running `host-example` process, its output in `log`; killed (`kill -9`) on drop, so a
/// failing test leaves none behind.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `bin --config config <args>` with the SCIM token in `SCIM_TOKEN` and the
    /// shared database in `SCIM_PROVISIONER_DATABASE`, stdout and stderr to `log`.
    pub fn spawn(
        bin: &Path,
        config: &Path,
        args: &[&str],
        token: &str,
        database_url: &str,
        log: PathBuf,
    ) -> Daemon {
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(args)
            .env("SCIM_TOKEN", token)
            .env("SCIM_PROVISIONER_DATABASE", database_url)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("a daemon starts");
        Daemon { child, log }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a daemon configuration to `path`: scim2-server at `base_url` (token from
/// `SCIM_TOKEN`), the `[host]` section's `host_lines`, and the mappings `userName` ← name,
/// work email ← mail, `active`, `externalId` ← the CMS id, then `extra_mappings` (TOML
/// `[[mapping]]` tables).
pub fn write_config(path: &Path, base_url: &str, host_lines: &str, extra_mappings: &str) {
    write_config_with_policy(path, "", base_url, 5, host_lines, extra_mappings);
}

/// [`write_config`] with top-level policy keys (`policy_lines`, e.g. `matching = [...]`)
/// before the sections, and the SCIM requests' timeout.
pub fn write_config_with_policy(
    path: &Path,
    policy_lines: &str,
    base_url: &str,
    timeout_secs: u32,
    host_lines: &str,
    extra_mappings: &str,
) {
    std::fs::write(
        path,
        format!(
            r#"{policy_lines}
[scim]
base_url = "{base_url}"
token_env = "SCIM_TOKEN"
timeout_secs = {timeout_secs}

[host]
{host_lines}

[[mapping]]
target = "userName"
source = "name"
required = true

[[mapping]]
target = 'emails[type eq "work"].value'
source = "mail"

[[mapping]]
target = "active"
source = "@active"

[[mapping]]
target = "externalId"
source = "@id"
{extra_mappings}"#
        ),
    )
    .expect("config");
}

/// The last `lines` lines of a log.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits for `done`, checked every `poll`; fails (with the daemons' logs) when a daemon
/// exits or `deadline` passes. A daemon killed by a signal (the test's own `kill -9`) is
/// not a failure.
pub fn wait_until(
    what: &str,
    daemons: &mut [Daemon],
    deadline: Duration,
    poll: Duration,
    mut done: impl FnMut() -> bool,
) {
    let started = Instant::now();
    while !done() {
        for d in daemons.iter_mut() {
            if let Ok(Some(status)) = d.child.try_wait()
                && status.code().is_some()
            {
                panic!("a daemon exited ({status}):\n{}", tail(&d.log, 20));
            }
        }
        if started.elapsed() >= deadline {
            let logs: Vec<String> = daemons
                .iter()
                .enumerate()
                .map(|(i, d)| format!("daemon {i}:\n{}", tail(&d.log, 15)))
                .collect();
            panic!("{what}: not within {deadline:?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(poll);
    }
}

/// Every user on the SCIM server, read back page by page.
pub fn scim_users(peer: &Peer) -> Vec<serde_json::Value> {
    scim_users_with_attributes(peer, &[])
}

/// Every user on the SCIM server, read back page by page, with only `attributes` (and
/// `id`, which a server always returns); all of them when `attributes` is empty. Asking
/// for the few a check reads makes a large read-back far cheaper: scim2-server spends
/// most of a listing serialising whole users.
pub fn scim_users_with_attributes(peer: &Peer, attributes: &[&str]) -> Vec<serde_json::Value> {
    let projection = if attributes.is_empty() {
        String::new()
    } else {
        format!("&attributes={}", attributes.join(","))
    };
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let (status, page) = get_json(
            &format!(
                "{}/Users?startIndex={start}&count=200{projection}",
                peer.base_url
            ),
            &peer.token,
        )
        .expect("listing");
        assert_eq!(status, 200, "{page}");
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
        start += resources.len();
        let last = resources.is_empty() || start > total;
        out.extend(resources);
        if last {
            return out;
        }
    }
}
