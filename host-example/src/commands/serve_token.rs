//! `serve-token`: rotate the bearer token `serve` checks, or show which one is in force,
//! and exit, without starting a server (an administrator's rotation, from cron or by hand).
//!
//! - `rotate` makes a new token, keeps only its SHA-256 where `serve` keeps it, and prints
//!   the token once, alone on stdout (so `TOKEN=$(host-example serve-token rotate)` takes
//!   it); what it did goes to stderr, with the fingerprint, never the token. Every running
//!   `serve` on the database (PostgreSQL, MariaDB or the SQLite file) takes it within
//!   seconds and refuses the old one, without a restart: each reads the stored hash again
//!   every few seconds, and at once (at most once a second; on SQLite ten times) when a
//!   token does not match (`host_example::serve` `token.rs`), exactly as after
//!   `serve --new-token`.
//! - `fingerprint` prints the first 16 hex digits of the kept SHA-256, which are those of
//!   `printf %s "$TOKEN" | sha256sum`: it tells which token is in force without showing it.
//!
//! Neither ever writes a token to a log; a damaged or missing hash is an error that says
//! what to do.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use host_example::database::DatabaseUrl;
use host_example::directory::{SharedDirectory, SharedTokenHash, shared_token_hash};
use host_example::serve::{
    TokenHashSource, hash_from_hex, hash_to_hex, token_hash, try_generate_token,
};
use host_example::store::Store;

use super::serve::{OLD_TOKEN_KEY, TOKEN_HASH_KEY, shared_database};

/// Hex digits of the kept SHA-256 shown as the fingerprint (64 bits: enough to tell tokens
/// apart, too few to stand for the hash).
const FINGERPRINT_HEX_DIGITS: usize = 16;

/// The fingerprint of a token's SHA-256.
fn fingerprint(hash: &[u8; 32]) -> String {
    hash_to_hex(hash)[..FINGERPRINT_HEX_DIGITS].to_string()
}

/// `serve-token rotate`: a new token for every `serve` on `database`, printed once.
pub fn rotate(database: &Path) -> anyhow::Result<ExitCode> {
    let (token, hash) = if let Some(url) = shared_database(database)? {
        let (hash, token) = shared_token_hash(&url, true)?;
        let token = token.context("the database kept no new token")?;
        eprintln!(
            "rotated the server token of {}: every serve on it takes the new one within seconds, and refuses the old one",
            url.redacted()
        );
        (token, hash)
    } else {
        let mut store = open_existing_sqlite(database)?;
        let token = try_generate_token()?;
        let hash = token_hash(&token);
        store.set_meta(TOKEN_HASH_KEY, &hash_to_hex(&hash))?;
        // A token an older version kept in clear is no longer the one in force.
        store.delete_meta(OLD_TOKEN_KEY)?;
        eprintln!(
            "rotated the server token of {}: its serve takes the new one within seconds, and refuses the old one",
            database.display()
        );
        (token, hash)
    };
    eprintln!(
        "fingerprint {} (the token below is shown once: only its hash is kept)",
        fingerprint(&hash)
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// `serve-token fingerprint`: which token `serve` on `database` admits, without the token.
pub fn show_fingerprint(database: &Path) -> anyhow::Result<ExitCode> {
    let hash = if let Some(url) = shared_database(database)? {
        shared_hash(&url)?
    } else {
        let store = open_existing_sqlite(database)?;
        match store.meta(TOKEN_HASH_KEY)? {
            Some(hex) => Some(hash_from_hex(&hex).with_context(|| {
                format!(
                    "the token hash kept in {} is damaged: `serve-token rotate` makes a new token",
                    database.display()
                )
            })?),
            // Kept in clear by an older version (moved to its hash on serve's next start).
            None => store.meta(OLD_TOKEN_KEY)?.map(|t| token_hash(&t)),
        }
    };
    match hash {
        Some(hash) => {
            println!("{}", fingerprint(&hash));
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no server token is kept in {}: serve makes one on its first start, or `serve-token rotate`",
            shown(database)
        ),
    }
}

/// The hash kept in a shared database (its tables made first, as `serve` makes them).
fn shared_hash(url: &DatabaseUrl) -> anyhow::Result<Option<[u8; 32]>> {
    drop(SharedDirectory::open(url)?);
    SharedTokenHash::open(url)?.read_hash()
}

/// `--database` as it may be shown: a URL without its password.
fn shown(database: &Path) -> String {
    match shared_database(database) {
        Ok(Some(url)) => url.redacted(),
        _ => database.display().to_string(),
    }
}

/// The SQLite directory at `path`; not made when missing (a mistyped path would otherwise
/// get a token no server checks).
fn open_existing_sqlite(path: &Path) -> anyhow::Result<Store> {
    if !path.is_file() {
        bail!(
            "no directory at {}: give serve's --database (serve makes it on its first start)",
            path.display()
        );
    }
    Store::open(path)
}
