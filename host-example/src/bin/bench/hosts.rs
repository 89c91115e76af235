//! Phase 6 (`--hosts`), every host against the Rust host: the Rust host's per-call cost of
//! `plan`, `map-user` and a no-change `provision`, its RSS over many `plan` calls and a
//! first sync; then each other host's own bench with the same sizes and JSON keys, and one
//! table with each host's ratio to the Rust host.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use host_example::types as wit;
use host_example::{Runtime, describe_error};
use serde_json::{Value, json};

use crate::runner::{REPEATS, median_ns_per_op};
use crate::servers::start_peer;
use crate::sync::{bench_first_sync, sync_settings};

/// The sizes of phase 6, from the command line.
pub struct HostsArgs {
    /// Calls per per-call measurement.
    pub calls: usize,
    /// `plan` calls over which memory is watched.
    pub memory_calls: usize,
    /// Users in the first sync.
    pub sync_users: usize,
    /// Component instances a first sync runs at once.
    pub sync_concurrency: u32,
}

/// The user every host's bench provisions: the same fields as `hosts/php/bench.php`'s.
fn bench_user(i: usize) -> wit::CmsUser {
    let text = |s: String| wit::FieldValue::Text(s);
    wit::CmsUser {
        id: i.to_string(),
        fields: vec![
            ("name".into(), text(format!("bench{i}"))),
            ("mail".into(), text(format!("bench{i}@drupal.example"))),
            ("field_first_name".into(), text("Ada".into())),
            ("field_last_name".into(), text("Lovelace".into())),
            (
                "roles".into(),
                wit::FieldValue::TextList(vec!["member".into()]),
            ),
        ],
        active: true,
    }
}

/// This process's resident memory, in KiB (Linux).
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(-1)
}

/// Measures phase 6 and prints its table.
pub fn run(runtime: &Runtime, args: &HostsArgs) -> Result<()> {
    let n = args.calls.max(1);
    let Some((peer, base, token)) = start_peer()? else {
        bail!("--hosts needs scim2-server: run scripts/install-peers");
    };
    let settings = sync_settings(base, token);
    let mut session = runtime
        .open(&settings)?
        .map_err(|e| anyhow!("cannot open a connector: {}", describe_error(&e)))?;
    let user = bench_user(1);
    let created = session
        .provision(&user, wit::UserEvent::Created, None)?
        .map_err(|e| anyhow!("creating the bench user: {}", describe_error(&e)))?;
    let link = created
        .link
        .ok_or_else(|| anyhow!("the bench user was not created"))?;
    let us = |ns: f64| ns / 1000.0;
    let plan_us = us(median_ns_per_op(n, || {
        for _ in 0..n {
            black_box(session.plan(black_box(&user), wit::UserEvent::Updated, true)?);
        }
        Ok(())
    })?);
    let map_us = us(median_ns_per_op(n, || {
        for _ in 0..n {
            black_box(
                session
                    .map_user(black_box(&user))?
                    .map_err(|e| anyhow!("map: {}", describe_error(&e)))?,
            );
        }
        Ok(())
    })?);
    let provision_us = us(median_ns_per_op(n, || {
        for _ in 0..n {
            let outcome = session
                .provision(black_box(&user), wit::UserEvent::Updated, Some(&link))?
                .map_err(|e| anyhow!("provision: {}", describe_error(&e)))?;
            if outcome.action != wit::Action::Unchanged {
                bail!("a no-change provision sent something: {:?}", outcome.action);
            }
        }
        Ok(())
    })?);
    let rss0 = rss_kib();
    for _ in 0..args.memory_calls {
        black_box(session.plan(&user, wit::UserEvent::Updated, true)?);
    }
    let rss_growth = rss_kib() - rss0;
    drop(session);
    drop(peer);
    let sync = bench_first_sync(runtime, args.sync_users, 100, false, args.sync_concurrency)?;
    let mut hosts = vec![json!({
        "host": "rust",
        "runtime": "host-example, wasmtime 48 (bindgen)",
        "plan_us": plan_us,
        "map_us": map_us,
        "provision_unchanged_us": provision_us,
        "memory_calls": args.memory_calls,
        "rss_growth_kib": rss_growth,
        "sync_users": args.sync_users,
        "sync_seconds": sync.as_ref().map(|s| s.0),
        "sync_requests": sync.as_ref().map(|s| s.1.requests),
        "sync_bulk": sync.as_ref().map(|s| s.1.bulk_requests),
    })];

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for other in other_hosts(&root) {
        let out =
            std::env::temp_dir().join(format!("bench-{}-{}.json", other.name, std::process::id()));
        println!(
            "\n== the {} host's own bench ({}) ==",
            other.name, other.script
        );
        let status = Command::new(&other.program)
            .args(&other.prefix)
            .arg(root.join(other.script))
            .args(["--calls", &n.to_string()])
            .args(["--plan-calls", &args.memory_calls.to_string()])
            .args(["--sync-users", &args.sync_users.to_string()])
            .args(["--concurrency", &args.sync_concurrency.to_string()])
            .arg("--json")
            .arg(&out)
            .status();
        match status {
            Ok(s) if s.success() => {
                let text = std::fs::read_to_string(&out)?;
                let _ = std::fs::remove_file(&out);
                let figures: Value = serde_json::from_str(&text)
                    .with_context(|| format!("reading the {} bench's figures", other.name))?;
                hosts.push(figures);
            }
            Ok(s) => println!("the {} bench failed ({s}); it is left out", other.name),
            Err(e) => println!(
                "the {} bench could not run ({e}); it is left out",
                other.name
            ),
        }
    }

    println!(
        "\n== every host against the Rust host: {n} calls per figure (median of {REPEATS}), \
         memory over {} plan calls, a first sync of {} users at concurrency {} ==",
        args.memory_calls, args.sync_users, args.sync_concurrency
    );
    println!(
        "{:<6} {:>10} {:>7} {:>10} {:>7} {:>13} {:>7} {:>12} {:>9} {:>7} {:>14}",
        "host",
        "plan us",
        "x rust",
        "map us",
        "x rust",
        "provision us",
        "x rust",
        "RSS growth",
        "sync s",
        "x rust",
        "requests/bulk"
    );
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let rust = hosts[0].clone();
    let ratio = |v: &Value, k: &str| match (num(v, k), num(&rust, k)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
        _ => "-".into(),
    };
    let cell = |v: &Value, k: &str| num(v, k).map_or("-".into(), |x| format!("{x:.1}"));
    for h in &hosts {
        println!(
            "{:<6} {:>10} {:>7} {:>10} {:>7} {:>13} {:>7} {:>9} KiB {:>9} {:>7} {:>14}",
            h.get("host").and_then(Value::as_str).unwrap_or("?"),
            cell(h, "plan_us"),
            ratio(h, "plan_us"),
            cell(h, "map_us"),
            ratio(h, "map_us"),
            cell(h, "provision_unchanged_us"),
            ratio(h, "provision_unchanged_us"),
            num(h, "rss_growth_kib").map_or("-".into(), |x| format!("{x:+.0}")),
            num(h, "sync_seconds").map_or("-".into(), |x| format!("{x:.2}")),
            ratio(h, "sync_seconds"),
            match (num(h, "sync_requests"), num(h, "sync_bulk")) {
                (Some(r), Some(b)) => format!("{r:.0}/{b:.0}"),
                _ => "-".into(),
            },
        );
    }
    for h in &hosts {
        println!(
            "{}: {}",
            h.get("host").and_then(Value::as_str).unwrap_or("?"),
            h.get("runtime").and_then(Value::as_str).unwrap_or("?")
        );
        if let Some(notes) = h.get("notes").and_then(Value::as_str) {
            println!("  notes: {notes}");
        }
    }
    Ok(())
}

/// Another host's bench: how to run it. Each takes `--calls`, `--plan-calls`,
/// `--sync-users`, `--concurrency` and `--json FILE`, and writes the same keys as the Rust
/// figures (null, with a `notes` key, for a figure it cannot give).
struct OtherHost {
    name: &'static str,
    program: PathBuf,
    prefix: Vec<String>,
    script: &'static str,
}

/// The PHP, Python (the peers venv's, which has wasmtime-py) and Node hosts' benches.
fn other_hosts(root: &Path) -> [OtherHost; 3] {
    let peers = std::env::var_os("SCIM_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/peers"));
    [
        OtherHost {
            name: "php",
            program: "php".into(),
            prefix: Vec::new(),
            script: "hosts/php/bench.php",
        },
        OtherHost {
            name: "python",
            program: peers.join("venv/bin/python"),
            prefix: Vec::new(),
            script: "hosts/python/bench.py",
        },
        OtherHost {
            name: "node",
            program: "node".into(),
            // A collected heap before each RSS reading.
            prefix: vec!["--expose-gc".into()],
            script: "hosts/node/bench.mjs",
        },
    ]
}
