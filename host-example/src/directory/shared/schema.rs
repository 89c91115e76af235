//! The directory's tables on PostgreSQL and MariaDB: the same logical schema as the SQLite
//! file's (`scim_resources`, `scim_group_members`), with the column types each engine
//! needs, and a `seq` column for the store's order (SQLite's `rowid`). Created and migrated
//! by the host's migrations ([`crate::database::migrate`]), which record the version
//! reached under the component `directory` in `schema_version`, under a database-wide
//! lock, so several `serve` processes starting at once on an empty database create it once.
//!
//! `scim_server_settings` holds what every `serve` process on the database shares: the
//! SHA-256 of the bearer token (see [`super::shared_token_hash`]).
//!
//! Indexed text (a userName, an externalId, a member value) is kept whole when it is short,
//! and as `#sha256:` and its digest when it is longer than [`INDEX_KEY_MAX`] bytes (see
//! [`index_key`]): MariaDB indexes at most 3,072 bytes of a key and PostgreSQL about 2,700,
//! and an identity provider may send a longer value. The full value stays in the JSON, and
//! the core's `select` decides every match, so the key only has to narrow.

use sha2::{Digest, Sha256};

use crate::database::Migration;

/// The longest indexed value kept as it is, in bytes.
pub(super) const INDEX_KEY_MAX: usize = 512;

/// The value an index holds for `text`: itself, or `#sha256:<hex>` when longer than
/// [`INDEX_KEY_MAX`] bytes.
pub(super) fn index_key(text: &str) -> String {
    if text.len() <= INDEX_KEY_MAX {
        return text.to_string();
    }
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("#sha256:{hex}")
}

/// The component name the directory's schema version is recorded under.
pub const DIRECTORY_COMPONENT: &str = "directory";

/// The directory's schema steps. A new step is appended; an applied one is never changed.
/// The SQLite step is the SQLite directory's own tables (`directory::schema`), so the
/// version means the same on all three.
pub const DIRECTORY_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "SCIM resources, the group membership index, the server's settings",
    sqlite: "CREATE TABLE IF NOT EXISTS scim_resources (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            created TEXT NOT NULL,
            modified TEXT NOT NULL,
            unique_key TEXT,
            external_id TEXT,
            json TEXT NOT NULL,
            password_hash TEXT,
            PRIMARY KEY (kind, id)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS scim_unique ON scim_resources(kind, unique_key);
        CREATE INDEX IF NOT EXISTS scim_external ON scim_resources(kind, external_id);
        CREATE TABLE IF NOT EXISTS scim_group_members (
            group_id TEXT NOT NULL,
            member_key TEXT NOT NULL,
            member_value TEXT,
            PRIMARY KEY (group_id, member_key)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS scim_group_members_key ON scim_group_members(member_key);
        CREATE TABLE IF NOT EXISTS scim_server_settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )",
    postgres: "CREATE TABLE IF NOT EXISTS scim_resources (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind VARCHAR(8) NOT NULL,
            id VARCHAR(255) NOT NULL,
            version BIGINT NOT NULL,
            created TEXT NOT NULL,
            modified TEXT NOT NULL,
            unique_key VARCHAR(600),
            external_id VARCHAR(600),
            json TEXT NOT NULL,
            password_hash TEXT,
            UNIQUE (kind, id),
            UNIQUE (kind, unique_key)
        );
        CREATE INDEX IF NOT EXISTS scim_external ON scim_resources (kind, external_id);
        CREATE INDEX IF NOT EXISTS scim_order ON scim_resources (kind, seq);
        CREATE TABLE IF NOT EXISTS scim_group_members (
            group_id VARCHAR(255) NOT NULL,
            member_key VARCHAR(600) NOT NULL,
            member_value TEXT,
            PRIMARY KEY (group_id, member_key)
        );
        CREATE INDEX IF NOT EXISTS scim_group_members_key ON scim_group_members (member_key);
        CREATE TABLE IF NOT EXISTS scim_server_settings (
            name VARCHAR(64) PRIMARY KEY,
            value TEXT NOT NULL
        )",
    // utf8mb4_bin: ids and keys compare byte for byte, as in SQLite (MariaDB's default
    // collations ignore case and trailing spaces). Key columns stay within InnoDB's
    // 3,072-byte index limit at 4 bytes a character.
    mysql: "CREATE TABLE IF NOT EXISTS scim_resources (
            seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            kind VARCHAR(8) NOT NULL,
            id VARCHAR(255) NOT NULL,
            version BIGINT NOT NULL,
            created VARCHAR(64) NOT NULL,
            modified VARCHAR(64) NOT NULL,
            unique_key VARCHAR(600),
            external_id VARCHAR(600),
            json LONGTEXT NOT NULL,
            password_hash TEXT,
            UNIQUE KEY scim_id (kind, id),
            UNIQUE KEY scim_unique (kind, unique_key),
            KEY scim_external (kind, external_id),
            KEY scim_order (kind, seq)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
        CREATE TABLE IF NOT EXISTS scim_group_members (
            group_id VARCHAR(128) NOT NULL,
            member_key VARCHAR(600) NOT NULL,
            member_value TEXT,
            PRIMARY KEY (group_id, member_key),
            KEY scim_group_members_key (member_key)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
        CREATE TABLE IF NOT EXISTS scim_server_settings (
            name VARCHAR(64) PRIMARY KEY,
            value TEXT NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
}];

/// The schema version this build writes.
pub const DIRECTORY_SCHEMA_VERSION: i64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_index_keys_are_digests() {
        assert_eq!(index_key("alice@example.com"), "alice@example.com");
        let long = "x".repeat(INDEX_KEY_MAX + 1);
        let key = index_key(&long);
        assert!(key.starts_with("#sha256:") && key.len() == 8 + 64, "{key}");
        assert_ne!(key, index_key(&"y".repeat(INDEX_KEY_MAX + 1)));
        assert_eq!(
            index_key(&"é".repeat(INDEX_KEY_MAX / 2)).len(),
            INDEX_KEY_MAX
        );
    }

    #[test]
    fn the_last_step_is_the_current_version() {
        assert_eq!(
            DIRECTORY_MIGRATIONS.last().map(|s| s.version),
            Some(DIRECTORY_SCHEMA_VERSION)
        );
    }
}
