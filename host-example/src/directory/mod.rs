//! The `directory` capability on SQLite: the store behind `serve`, where an identity
//! provider's users and groups land. Simple equality filters on indexed attributes narrow
//! the candidates in SQL; the core's own `select` (linked natively) then filters, sorts and
//! pages them, so host and guest never disagree on what a filter or a sort means.
//!
//! Files: `schema` (the tables, the file's settings, their migrations), `queries` (the
//! reads in SQL), `member_index` (the index of group members a user's `groups` is read
//! through), and `backend` (the directory port's implementation: queries and writes).
//! `shared` is the same directory on PostgreSQL or MariaDB, for several `serve` processes
//! on one database.

mod backend;
mod member_index;
mod queries;
mod schema;
pub mod shared;

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::store::Store;

pub use shared::{SharedDirectory, SharedTokenHash, shared_token_hash};

/// A directory in a SQLite file. Users are also kept as normal CMS users in the same
/// file's `users` table (the host store's), so an identity provider's users appear in the
/// CMS; those changes are not queued for outbound provisioning.
///
/// Every write (the SCIM resource, its CMS user, a deleted user's group memberships) is one
/// transaction. Directories opened with the same write lock (a `serve`'s workers) take it
/// around each write, so they queue in the process rather than in SQLite's busy handler,
/// which sleeps and retries.
pub struct SqliteDirectory {
    conn: Connection,
    write_lock: Arc<Mutex<()>>,
}

/// Checkpoints the WAL of the SQLite file at `path` every `every` until `stop` is set: the
/// writes of connections that leave their checkpoints to the caller get copied into the
/// database here, off the request path. PASSIVE: never waits for a reader or a writer.
pub fn checkpoint_until(
    path: &std::path::Path,
    every: std::time::Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let conn = crate::sqlite_page_cache::open(path)?;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(every);
        // A busy database only postpones the checkpoint to the next round.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    Ok(())
}

impl SqliteDirectory {
    /// Opens (creating if needed) the directory tables in the SQLite file at `path`.
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        Self::open_shared(path, Arc::default())
    }

    /// Opens the directory with a write lock shared with other directories on the same
    /// file in this process (one per `serve` worker).
    pub fn open_shared(path: &std::path::Path, write_lock: Arc<Mutex<()>>) -> anyhow::Result<Self> {
        let conn = schema::open(path)?;
        // The CMS tables (`users`) the writes mirror into.
        drop(Store::open(path)?);
        Ok(SqliteDirectory { conn, write_lock })
    }

    /// Whether `password` is the password of the User with this id in the directory at
    /// `path`: `None` when there is no such User or it has no password. This is how the CMS
    /// checks a password an identity provider set; the directory keeps only its argon2id
    /// hash and never returns it.
    pub fn check_password(
        path: &std::path::Path,
        id: &str,
        password: &str,
    ) -> anyhow::Result<Option<bool>> {
        let conn = crate::sqlite_page_cache::open(path)?;
        let hash: Option<Option<String>> = conn
            .query_row(
                "SELECT password_hash FROM scim_resources WHERE kind = 'User' AND id = ?1",
                [id],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        Ok(hash
            .flatten()
            .map(|h| backend::verify_password(&h, password)))
    }

    /// Stops this connection from checkpointing the WAL itself: whoever opened it runs the
    /// checkpoints (see [`checkpoint_until`]). A checkpoint syncs the database file, a stall
    /// of milliseconds in whichever write happened to fill the WAL's 1,000th page.
    pub fn leave_checkpoints_to_caller(&self) -> anyhow::Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
