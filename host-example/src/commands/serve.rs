//! `serve`: SCIM 2.0 from a directory in SQLite, PostgreSQL or MariaDB (the Joomla side).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use host_example::GuestLimits;
use host_example::database::DatabaseUrl;
use host_example::serve::{
    ServeOptions, ServerToken, TokenHashSource, hash_from_hex, hash_to_hex, token_hash,
    try_generate_token,
};
use host_example::store::Store;

use crate::app::{load_runtime, log_sink};

/// Where the token's SHA-256 is kept; the token itself is kept nowhere.
pub(super) const TOKEN_HASH_KEY: &str = "server_token_sha256";
/// Where versions before 0.1 kept the token itself; moved to its hash on the next start.
pub(super) const OLD_TOKEN_KEY: &str = "server_token";

/// How `serve` was asked to run.
pub struct ServeArgs<'a> {
    /// Where to listen.
    pub listen: &'a str,
    /// The SQLite directory.
    pub database: &'a Path,
    /// The variable holding the token, if any.
    pub token_env: Option<&'a str>,
    /// Replace the stored token with a new one.
    pub new_token: bool,
    /// Workers, connection caps and deadlines.
    pub options: ServeOptions,
    /// The guest limits.
    pub limits: GuestLimits,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<&'a str>,
}

/// Serves until the process is stopped. The token comes from `token_env`; else one is
/// generated the first time (or with `--new-token`), shown once, and only its hash kept
/// in the database.
pub fn run(
    component: Option<&Path>,
    verbose: bool,
    args: &ServeArgs<'_>,
) -> anyhow::Result<ExitCode> {
    let runtime = load_runtime(component, None, verbose)?.with_limits(args.limits);
    let (token, shown) = match args.token_env {
        Some(var) => {
            let t = std::env::var(var)
                .ok()
                .filter(|t| !t.is_empty())
                .with_context(|| format!("environment variable {var} is not set"))?;
            (ServerToken::Plain(t), format!("(from ${var})"))
        }
        None if let Some(url) = shared_database(args.database)? => {
            // Every process on the database checks the same token: its hash is kept there,
            // and read again while serving, so `--new-token` on one process rotates it on
            // all of them (within `serve::RECHECK_EVERY`).
            let (_, new) = host_example::directory::shared_token_hash(&url, args.new_token)?;
            let shown = match new {
                Some(t) => format!(
                    "{t}\n                   (shown once: only its hash is kept; every serve on this database takes it within seconds)"
                ),
                None => "(shown when it was made; only its hash is kept: --new-token replaces it)"
                    .into(),
            };
            let source = host_example::directory::SharedTokenHash::open(&url)?;
            (ServerToken::Rotating(Arc::new(source)), shown)
        }
        None => {
            let mut store = Store::open(args.database)?;
            let mut shown = None;
            if let Some(old) = store.meta(OLD_TOKEN_KEY)? {
                // Kept in clear by an older version: keep its hash instead, and show it a
                // last time.
                store.set_meta(TOKEN_HASH_KEY, &hash_to_hex(&token_hash(&old)))?;
                store.delete_meta(OLD_TOKEN_KEY)?;
                shown = Some(old);
            }
            let stored = store.meta(TOKEN_HASH_KEY)?;
            let shown = match stored {
                Some(hex) if !args.new_token => {
                    hash_from_hex(&hex).with_context(|| {
                        format!(
                            "the token hash kept in {} is damaged; start with --new-token",
                            args.database.display()
                        )
                    })?;
                    shown.unwrap_or_else(|| {
                        "(shown when it was made; only its hash is kept: --new-token replaces it)"
                            .into()
                    })
                }
                _ => {
                    let t = try_generate_token()?;
                    store.set_meta(TOKEN_HASH_KEY, &hash_to_hex(&token_hash(&t)))?;
                    format!("{t}\n                   (shown once: only its hash is kept)")
                }
            };
            // The hash is read again from the file while serving, as on a shared database,
            // so `serve-token rotate` (or `serve --new-token`) on this file rotates the token
            // of this running serve too (within `serve::RECHECK_EVERY`).
            let source = SqliteTokenHash {
                store: Mutex::new(store),
            };
            (ServerToken::Rotating(Arc::new(source)), shown)
        }
    };
    let log = match &token {
        ServerToken::Plain(t) => log_sink(verbose).redact([t.clone()]),
        ServerToken::Sha256(_) | ServerToken::Rotating(_) => log_sink(verbose),
    };
    let options = &args.options;
    let _metrics = super::metrics::start(args.metrics_listen)?;
    let database = match shared_database(args.database)? {
        Some(url) => url,
        None => DatabaseUrl::Sqlite(args.database.to_path_buf()),
    };
    let server =
        host_example::serve::start_on(&runtime, &database, args.listen, &token, "", log, options)?;
    let banner = format!(
        "SCIM base URL:     {}\nSCIM bearer token: {shown}\nserving {} with {} workers (Ctrl-C stops)\n",
        server.base_url,
        database.redacted(),
        options.workers
    );
    // Written in one piece, and a stdout that is gone is no reason to stop serving: a
    // supervisor (or a test) that read the address and closed the pipe made `println!`
    // panic here, and the server stopped under its first requests.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    server.wait()?;
    Ok(ExitCode::SUCCESS)
}

/// The shortest time between two reads of the SQLite file's hash that tokens that do not
/// match ask for: a read is one indexed row of a local file (microseconds), so ten a
/// second cost nothing, and a wrong token is answered 401 (a rotated one admitted) within
/// about this long instead of the shared databases' second.
const SQLITE_MISMATCH_RECHECK_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// The token's hash kept in a SQLite directory, read again on each
/// [`TokenHashSource::read_hash`] (by `serve`'s refresher: every `serve::RECHECK_EVERY`, or
/// at most once per [`SQLITE_MISMATCH_RECHECK_GAP`] when a token does not match; never
/// once per request). The connection is the one `serve` opened at its start, kept for this.
struct SqliteTokenHash {
    store: Mutex<Store>,
}

impl TokenHashSource for SqliteTokenHash {
    fn read_hash(&self) -> anyhow::Result<Option<[u8; 32]>> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        // Removed or damaged: no token is admitted, as on a shared database (see
        // `serve::TokenHashSource`); a file that cannot be read keeps the hash read last.
        Ok(store
            .meta(TOKEN_HASH_KEY)?
            .and_then(|hex| hash_from_hex(&hex)))
    }

    fn mismatch_recheck_gap(&self) -> std::time::Duration {
        SQLITE_MISMATCH_RECHECK_GAP
    }
}

/// The PostgreSQL or MariaDB database `--database` names (`postgres://…`, `mysql://…`), or
/// `None` for a SQLite file.
pub(super) fn shared_database(database: &Path) -> anyhow::Result<Option<DatabaseUrl>> {
    let text = database.to_string_lossy();
    if !text.contains("://") {
        return Ok(None);
    }
    let url = DatabaseUrl::parse(&text, Path::new("."))?;
    Ok(url.sqlite_path().is_none().then_some(url))
}
