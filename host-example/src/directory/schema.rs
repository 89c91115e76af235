//! The directory's tables and the settings of its file, and their migrations: what a
//! connection needs before the first read or write. Opening is idempotent, so every
//! `serve` worker opens the same file this way.

use rusqlite::Connection;

use super::backend::{hash_password, take_password};
use super::member_index::ensure_member_index;
use crate::types::ResourceKind;

/// The SCIM resources, users and groups alike: `unique_key` is the lower-cased userName
/// or Group displayName (case-insensitive, RFC 7643 §4.1.1), `json` the resource as the
/// core stored it.
const RESOURCES: &str = "CREATE TABLE IF NOT EXISTS scim_resources (
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                version INTEGER NOT NULL,
                created TEXT NOT NULL,
                modified TEXT NOT NULL,
                unique_key TEXT,
                external_id TEXT,
                json TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            );
            CREATE UNIQUE INDEX IF NOT EXISTS scim_unique ON scim_resources(kind, unique_key);
            CREATE INDEX IF NOT EXISTS scim_external ON scim_resources(kind, external_id);";

/// Opens the SQLite file at `path` (creating it if needed) with the directory's settings,
/// and creates or migrates its tables.
pub(super) fn open(path: &std::path::Path) -> anyhow::Result<Connection> {
    let mut conn = crate::sqlite_page_cache::open(path)?;
    // 1 KiB pages for a new file (an existing one keeps its own; this is a no-op there).
    // A POST changes about 14 pages (two rows, six indexes), each a WAL frame: smaller
    // frames made POST 8-19% faster at 1 connection, halved its p99, and left reads
    // as they were, with 400-byte and with 3.4 KB resources alike (`bench`, A/B).
    conn.pragma_update(None, "page_size", 1024)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a power
    // loss can lose the last commits but never corrupts the file (the CMS store does
    // the same); FULL cost a sync per write, most of a POST's time.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(RESOURCES)?;
    ensure_member_index(&mut conn)?;
    ensure_password_hashes(&mut conn)?;
    Ok(conn)
}

/// Adds the `password_hash` column (a User's argon2id hash, never returned), and moves any
/// `password` that an older version kept in a User's JSON in clear into it, hashed (issue
/// 28). The moved rows are rewritten with `secure_delete`, and the WAL is checkpointed and
/// truncated, so the clear text is left in no page of the file.
fn ensure_password_hashes(conn: &mut Connection) -> anyhow::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('scim_resources') WHERE name = 'password_hash'")?
        .exists([])?;
    if !has_column {
        // Another worker opening the same file at once may have added it first.
        if let Err(e) =
            conn.execute_batch("ALTER TABLE scim_resources ADD COLUMN password_hash TEXT")
            && !e.to_string().contains("duplicate column")
        {
            return Err(e.into());
        }
    }
    let clear: Vec<(String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT id, json FROM scim_resources WHERE kind = 'User' AND json LIKE '%\"password\"%'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut moved = Vec::new();
    for (id, json) in clear {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&json) else {
            continue;
        };
        let Some(password) = take_password(ResourceKind::User, &mut value) else {
            continue;
        };
        let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        moved.push((id, value.to_string(), hash));
    }
    if moved.is_empty() {
        return Ok(());
    }
    conn.pragma_update(None, "secure_delete", true)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (id, json, hash) in &moved {
        tx.execute(
            "UPDATE scim_resources SET json = ?2, password_hash = ?3 WHERE kind = 'User' AND id = ?1",
            rusqlite::params![id, json, hash],
        )?;
    }
    tx.commit()?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.pragma_update(None, "secure_delete", false)?;
    Ok(())
}
