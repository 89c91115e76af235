//! `bench --rate`: a first sync of N users (default 5,000) into the quirky server behind a
//! token bucket of L requests a second (`--rate-limit`, default 50), with the host's
//! adaptive rate control (issue 31, part 2) and without it, side by side. Reported for
//! each: the share of requests answered 429 (goal < 5 %), the accepted requests a second as
//! a share of the limit (goal ≥ 90 %), users a second, seconds and rounds.
//!
//! Without adaptation every request goes at once and a 429 goes back to the component,
//! which fails the user with its `Retry-After`: the run then syncs again, after that
//! `Retry-After` (1 s), until every user is there, as the host's outbox and scheduler did
//! before adaptation. The quirky server has no `/Bulk`, so each user costs its own POST.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use host_example::Runtime;
use host_example::rate::RateStats;

use crate::client::Client;
use crate::sync::{bench_store, sync_options, sync_settings};

/// The quirky server, killed when dropped; then its directory is removed.
pub struct Quirky(Child, #[allow(dead_code)] tempdir::Dir);

impl Drop for Quirky {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts the quirky server with `switches`: the process, base URL and token.
pub fn start_quirky(switches: &[&str]) -> Result<(Quirky, String, String)> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/quirky/server.py");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot pick a free port")?
        .port();
    let token = host_example::serve::generate_token();
    let dir = std::env::temp_dir().join(format!(
        "bench-rate-{}-{}",
        std::process::id(),
        host_example::clock::now_ms()
    ));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("python3")
        .arg(&script)
        .args(["--port", &port.to_string(), "--token", &token])
        .args(switches)
        .arg("--db")
        .arg(dir.join("quirky.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", script.display()))?;
    let mut quirky = Quirky(child, tempdir::Dir(dir));
    let base = format!("http://127.0.0.1:{port}/v2");
    let client = Client::new(&token);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = quirky.0.try_wait()? {
            bail!("the quirky server exited during startup ({status})");
        }
        if let Ok((200, _)) = client.get(&format!("{base}/ServiceProviderConfig")) {
            break;
        }
        if Instant::now() >= deadline {
            bail!("the quirky server did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The readiness probe took a token or two; let the bucket fill again.
    std::thread::sleep(Duration::from_secs(1));
    Ok((quirky, base, token))
}

/// One run's figures.
struct Run {
    seconds: f64,
    rounds: u32,
    created: u64,
    stats: RateStats,
}

impl Run {
    fn refused_share(&self) -> f64 {
        self.stats.throttled as f64 / self.stats.requests.max(1) as f64
    }

    fn accepted_per_second(&self) -> f64 {
        (self.stats.requests - self.stats.throttled) as f64 / self.seconds
    }
}

/// A first sync of `users` users into a fresh quirky server limited to `limit` requests a
/// second, synced again until every user is there (at most `max_rounds`).
fn first_sync(
    runtime: &Runtime,
    users: usize,
    limit: u32,
    adaptive: bool,
    max_rounds: u32,
) -> Result<Run> {
    let (_quirky, base, token) = start_quirky(&["--rate-limit", &limit.to_string()])?;
    let (_db, mut store) = bench_store(users)?;
    let settings = sync_settings(base.clone(), token);
    let target = host_example::rate::for_target(&base);
    target.set_adaptive(adaptive);
    target.reset_stats();
    let options = sync_options(8, 100);
    let started = Instant::now();
    let mut run = Run {
        seconds: 0.0,
        rounds: 0,
        created: 0,
        stats: RateStats::default(),
    };
    while run.rounds < max_rounds {
        run.rounds += 1;
        let summary = host_example::sync::sync(runtime, &settings, &mut store, &options)?;
        run.created += summary.created + summary.adopted;
        if run.created >= users as u64 {
            break;
        }
        // What a 429 said: try again after its Retry-After (the quirky server's is 1 s).
        std::thread::sleep(Duration::from_secs(1));
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.stats = target.stats();
    Ok(run)
}

/// Runs both and prints the comparison.
pub fn run(runtime: &Runtime, users: usize, limit: u32) -> Result<()> {
    println!(
        "\n== a first sync of {users} users into the quirky server at --rate-limit {limit} (token bucket; no /Bulk; concurrency 8) =="
    );
    let adaptive = first_sync(runtime, users, limit, true, 20)?;
    let fixed = first_sync(runtime, users, limit, false, 400)?;
    println!(
        "| | requests | 429s | 429 share (goal < 5%) | accepted req/s | of the limit (goal ≥ 90%) | users/s | seconds | rounds | users there |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("adaptive (AIMD)", &adaptive),
        ("without adaptation", &fixed),
    ] {
        println!(
            "| {name} | {} | {} | {:.1}% | {:.1} | {:.1}% | {:.1} | {:.1} | {} | {} |",
            r.stats.requests,
            r.stats.throttled,
            r.refused_share() * 100.0,
            r.accepted_per_second(),
            r.accepted_per_second() / f64::from(limit) * 100.0,
            r.created as f64 / r.seconds,
            r.seconds,
            r.rounds,
            r.created
        );
    }
    println!(
        "adaptive: {} requests sent again after their Retry-After",
        adaptive.stats.retried
    );
    Ok(())
}
