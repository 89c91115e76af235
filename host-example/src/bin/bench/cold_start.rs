//! A cold process's first call: the `host-example` CLI started afresh, as an admin or a cron
//! job starts it, running `provision USER --dry-run` against a serve of ours. That reads
//! the config, opens the CMS database, maps the precompiled component, and makes the
//! component's four GETs (the POST is held back), all in the timed process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use host_example::Runtime;

use crate::figures::Figures;
use crate::servers::{SyncTarget, start_target};

/// Issue 13's first row: a cold `host-example` process's first call, against a fresh serve
/// of ours (see [`measure`]).
pub fn run(runtime: &Runtime, component: &Path, figures: &mut Figures) -> Result<()> {
    const FIGURE: &str = "cold process to first call: `host-example provision USER --dry-run` (the precompiled component; four GETs to a local `serve`)";
    const GOAL: &str = "≤ 20 ms";
    println!("\n== a cold process's first call ==");
    let Some(cli) = cli_binary() else {
        println!(
            "skipped: build the CLI beside the bench (`cargo build --release -p host-example`)"
        );
        figures.push(
            FIGURE,
            "not measured: the CLI was not built beside the bench",
            GOAL,
            None,
        );
        return Ok(());
    };
    let Some((server, base, token)) = start_target(runtime, SyncTarget::Ours)? else {
        bail!("our own server cannot be missing");
    };
    let dir = std::env::temp_dir().join(format!("scim-bench-cold-{}", std::process::id()));
    let measured = measure(&cli, component, &base, &token, &dir);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let cold = measured?;
    println!(
        "{} runs of `host-example provision bob --dry-run`: median {:.1} ms, fastest {:.1} ms, slowest {:.1} ms",
        cold.ms.len(),
        cold.median(),
        cold.fastest(),
        cold.ms[cold.ms.len() - 1]
    );
    figures.push(
        FIGURE,
        format!(
            "median {:.1} ms, fastest {:.1} ms, over {} runs",
            cold.median(),
            cold.fastest(),
            cold.ms.len()
        ),
        GOAL,
        Some(cold.median() <= 20.0),
    );
    Ok(())
}

/// The variable the CLI reads the bench server's token from.
const TOKEN_VAR: &str = "SCIM_BENCH_TOKEN";

/// The cold runs timed after the one that fills the cache.
pub const RUNS: usize = 20;

/// The wall time of each cold run, in ms.
pub struct ColdStart {
    /// Sorted, fastest first.
    pub ms: Vec<f64>,
}

impl ColdStart {
    /// The median run.
    pub fn median(&self) -> f64 {
        self.ms[self.ms.len() / 2]
    }

    /// The fastest run.
    pub fn fastest(&self) -> f64 {
        self.ms[0]
    }
}

/// The `host-example` binary beside this bench, if it was built.
fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let cli = exe.with_file_name(format!("host-example{}", std::env::consts::EXE_SUFFIX));
    cli.is_file().then_some(cli)
}

/// Times `RUNS` cold `provision bob --dry-run` runs of `cli` with `component`, against the
/// SCIM server at `base_url`, in a scratch directory `dir` (config, CMS database, cache).
fn measure(
    cli: &Path,
    component: &Path,
    base_url: &str,
    token: &str,
    dir: &Path,
) -> Result<ColdStart> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nbase_url = \"{base_url}\"\ntoken_env = \"{TOKEN_VAR}\"\n\n[host]\ndatabase = \"{}\"\n",
            dir.join("cms.db").display()
        ),
    )?;
    let run = |args: &[&str]| -> Result<f64> {
        let started = Instant::now();
        let out = Command::new(cli)
            .arg("--config")
            .arg(&config)
            .arg("--component")
            .arg(component)
            .args(args)
            .env(TOKEN_VAR, token)
            .env(host_example::CACHE_ENV, dir.join("cache"))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {}", cli.display()))?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!(
                "`host-example {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(ms)
    };
    run(&["users", "add", "--name", "bob", "--mail", "bob@example.com"])?;
    // The first run compiles the component into the cache; the timed ones map it.
    run(&["provision", "bob", "--dry-run"])?;
    let mut ms = (0..RUNS)
        .map(|_| run(&["provision", "bob", "--dry-run"]))
        .collect::<Result<Vec<f64>>>()?;
    ms.sort_by(f64::total_cmp);
    Ok(ColdStart { ms })
}
