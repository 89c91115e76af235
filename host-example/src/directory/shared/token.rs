//! The bearer token every `serve` process on one database checks: only its SHA-256 is kept,
//! in `scim_server_settings`, written by the first process (or by `serve --new-token`,
//! which rotates it) and read by the others; [`SharedTokenHash`] reads it again for a
//! running server (see `crate::serve::TokenHashSource`), so a rotation on one process
//! holds on all of them within seconds.

use std::sync::{Mutex, PoisonError};

use super::engine::{Conn, Failure};
use super::{CONNECT_WAIT, SharedDirectory};
use crate::database::DatabaseUrl;
use crate::serve::{TokenHashSource, hash_from_hex};

/// The setting that holds the token's SHA-256, as hex.
const NAME: &str = "server_token_sha256";

/// The SHA-256 of the bearer token every `serve` process on the database at `url` checks:
/// the one kept there, or, when there is none yet or `replace`, a new token's, returned
/// with the token itself (to be shown once; only its hash is kept). Processes starting at
/// once on a new database agree on one token: the first insert wins, the others read it.
pub fn shared_token_hash(
    url: &DatabaseUrl,
    replace: bool,
) -> anyhow::Result<([u8; 32], Option<String>)> {
    use crate::serve::{hash_to_hex, token_hash, try_generate_token};
    let mut directory = SharedDirectory::open(url)?;
    let conn = &mut directory.conn;
    let fail = |f: Failure| {
        anyhow::anyhow!(
            "the server token in the database: {}",
            f.into_directory_error()
        )
    };
    let read = |conn: &mut Conn| -> anyhow::Result<Option<[u8; 32]>> {
        let rows = conn
            .rows(
                "SELECT value FROM scim_server_settings WHERE name = ?",
                &[NAME.into()],
            )
            .map_err(fail)?;
        match rows.first() {
            None => Ok(None),
            Some(row) => {
                let hex = row.text(0)?;
                let hash = hash_from_hex(&hex).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the token hash kept in the database is damaged; start with --new-token"
                    )
                })?;
                Ok(Some(hash))
            }
        }
    };
    if !replace && let Some(hash) = read(conn)? {
        return Ok((hash, None));
    }
    let token = try_generate_token()?;
    let hash = token_hash(&token);
    let hex = hash_to_hex(&hash);
    if replace {
        let changed = conn
            .exec(
                "UPDATE scim_server_settings SET value = ? WHERE name = ?",
                &[hex.as_str().into(), NAME.into()],
            )
            .map_err(fail)?;
        if changed > 0 {
            return Ok((hash, Some(token)));
        }
    }
    match conn.exec(
        "INSERT INTO scim_server_settings (name, value) VALUES (?, ?)",
        &[NAME.into(), hex.as_str().into()],
    ) {
        Ok(_) => Ok((hash, Some(token))),
        // Another process made one first: that one holds.
        Err(Failure::Unique) => read(conn)?
            .map(|h| (h, None))
            .ok_or_else(|| anyhow::anyhow!("the server token vanished from the database")),
        Err(f) => Err(fail(f)),
    }
}

/// The token's hash as kept in the database, read again on each
/// [`TokenHashSource::read_hash`]: what a running `serve` checks presented tokens against.
pub struct SharedTokenHash {
    conn: Mutex<Conn>,
}

impl SharedTokenHash {
    /// Connects to the database at `url` (waiting up to 30 s for one that is starting).
    /// The token must have been made there first ([`shared_token_hash`]).
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<SharedTokenHash> {
        Ok(SharedTokenHash {
            conn: Mutex::new(Conn::connect(url, CONNECT_WAIT)?),
        })
    }
}

impl TokenHashSource for SharedTokenHash {
    fn read_hash(&self) -> anyhow::Result<Option<[u8; 32]>> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let rows = conn
            .rows(
                "SELECT value FROM scim_server_settings WHERE name = ?",
                &[NAME.into()],
            )
            .map_err(|f| {
                anyhow::anyhow!(
                    "the server token in the database: {}",
                    f.into_directory_error()
                )
            })?;
        // Removed or damaged: no token is admitted (see crate::serve::TokenHashSource).
        Ok(rows
            .first()
            .and_then(|row| row.text(0).ok())
            .and_then(|hex| hash_from_hex(&hex)))
    }
}
