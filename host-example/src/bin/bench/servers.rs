//! The servers a phase measures, each started fresh and stopped when dropped: ours
//! (`host_example::serve` over a temporary SQLite file, in this process) and the peer,
//! scim2-server (its own process, on a free loopback port).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use host_example::logging::{Level, LogSink};
use host_example::{Runtime, serve};

use crate::client::Client;

/// Where a first sync goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTarget {
    /// A fresh scim2-server.
    Peer,
    /// A fresh `serve` of ours, in this process, over a temporary SQLite file.
    Ours,
}

/// A started server: what keeps it alive (dropping it stops the server), its base URL and
/// its token.
pub type StartedServer = (Box<dyn std::any::Any>, String, String);

/// A fresh server to sync into. `None` when the peer is not installed.
pub fn start_target(runtime: &Runtime, target: SyncTarget) -> Result<Option<StartedServer>> {
    Ok(match target {
        SyncTarget::Peer => start_peer()?
            .map(|(peer, base, token)| (Box::new(peer) as Box<dyn std::any::Any>, base, token)),
        SyncTarget::Ours => {
            let db = TempDb::new()?;
            let token = serve::generate_token();
            let server = serve::start(
                runtime,
                &db.0,
                "127.0.0.1:0",
                &token,
                "",
                LogSink::stderr(Level::Warn),
            )?;
            let base = server.base_url.clone();
            // The server stops before its database is removed (tuple fields drop in order).
            Some((Box::new((server, db)), base, token))
        }
    })
}

/// A temporary SQLite file (and its journal siblings), removed on drop.
pub struct TempDb(pub PathBuf);

impl TempDb {
    pub fn new() -> Result<TempDb> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("scim-bench-{}-{nanos}.sqlite", std::process::id()));
        if path.exists() {
            bail!("{} already exists", path.display());
        }
        Ok(TempDb(path))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            // Missing siblings are fine.
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The peer process, killed and reaped on drop (also on an early error).
pub struct PeerProcess(pub Child);

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // An error means it has already exited.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SCIM2_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target/peers/venv/bin/scim2-server")
}

/// Starts a fresh scim2-server: the process, its base URL and its token. `None` (with a
/// message) when it is not installed.
pub fn start_peer() -> Result<Option<(PeerProcess, String, String)>> {
    let bin = peer_binary();
    if !bin.is_file() {
        println!(
            "scim2-server: skipped, {} not found (run scripts/test once to install it, or set SCIM2_SERVER_BIN)",
            bin.display()
        );
        return Ok(None);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot pick a free port")?
        .port();
    let token = serve::generate_token();
    let child = Command::new(&bin)
        .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
        .args(["--bearer-token", &token])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut peer = PeerProcess(child);
    let base = format!("http://127.0.0.1:{port}/v2");
    wait_ready(&mut peer, &base, &token)?;
    Ok(Some((peer, base, token)))
}

fn wait_ready(peer: &mut PeerProcess, base: &str, token: &str) -> Result<()> {
    let client = Client::new(token);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = peer.0.try_wait()? {
            bail!("scim2-server exited during startup ({status})");
        }
        if let Ok((200, _)) = client.get(&format!("{base}/ServiceProviderConfig")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("scim2-server did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
