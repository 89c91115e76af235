//! Schema migrations: ordered steps, one SQL text per dialect, with the version each
//! component of the schema has reached recorded in `schema_version`.
//!
//! Each part of the host that owns tables (the store, the server role's directory …) is a
//! *component* with its own sequence of steps, so they migrate independently. A run takes
//! a database-wide lock first (PostgreSQL's advisory lock, MariaDB's `GET_LOCK`, SQLite's
//! write lock), so two workers starting at once migrate once. On PostgreSQL and SQLite a
//! step and its version are committed together; MariaDB commits DDL as it goes, so its
//! steps are written to be re-runnable (`IF NOT EXISTS`).

use anyhow::{Context, bail};

use super::{Db, Dialect, SqlValue};

/// One step of a component's schema. Statements in a text are separated by `;` at the end
/// of a line; none may contain a `;` of its own.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version this step brings the component to: 1, 2, 3 … in order.
    pub version: i64,
    /// What it does, for errors.
    pub description: &'static str,
    /// The step on SQLite.
    pub sqlite: &'static str,
    /// The step on PostgreSQL.
    pub postgres: &'static str,
    /// The step on MariaDB/MySQL.
    pub mysql: &'static str,
}

const VERSION_TABLE: &[(Dialect, &str)] = &[
    (
        Dialect::Sqlite,
        "CREATE TABLE IF NOT EXISTS schema_version (
            component TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT NOT NULL)",
    ),
    (
        Dialect::Postgres,
        "CREATE TABLE IF NOT EXISTS schema_version (
            component TEXT PRIMARY KEY, version BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    ),
    (
        Dialect::MySql,
        "CREATE TABLE IF NOT EXISTS schema_version (
            component VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY,
            version BIGINT NOT NULL, updated_at VARCHAR(40) NOT NULL) ENGINE=InnoDB",
    ),
];

/// The version `component` has reached (0 when it has none yet, or no table exists).
pub fn schema_version(db: &mut Db, component: &str) -> anyhow::Result<i64> {
    let exists = match db.dialect() {
        Dialect::Sqlite => db.query_opt(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            &[],
        )?,
        Dialect::Postgres => db.query_opt(
            "SELECT 1 FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = 'schema_version'",
            &[],
        )?,
        Dialect::MySql => db.query_opt(
            "SELECT 1 FROM information_schema.tables
             WHERE table_schema = DATABASE() AND table_name = 'schema_version'",
            &[],
        )?,
    };
    if exists.is_none() {
        return Ok(0);
    }
    match db.query_opt(
        "SELECT version FROM schema_version WHERE component = ?",
        &[component.into()],
    )? {
        Some(row) => row.int(0),
        None => Ok(0),
    }
}

/// Brings `component` up to the last of `steps`; returns the version it is at. A database
/// whose version is newer than these steps know (written by a newer host) is refused
/// rather than used.
pub fn migrate(db: &mut Db, component: &str, steps: &[Migration]) -> anyhow::Result<i64> {
    for (i, step) in steps.iter().enumerate() {
        if step.version != i as i64 + 1 {
            bail!("{component}'s migrations are not numbered 1, 2, 3 …");
        }
    }
    let dialect = db.dialect();
    lock(db)?;
    let result = run_steps(db, dialect, component, steps);
    unlock(db);
    result
}

fn run_steps(
    db: &mut Db,
    dialect: Dialect,
    component: &str,
    steps: &[Migration],
) -> anyhow::Result<i64> {
    let create = VERSION_TABLE
        .iter()
        .find(|(d, _)| *d == dialect)
        .map(|(_, sql)| *sql)
        .unwrap_or_default();
    db.batch_execute(create)?;
    let mut current = schema_version(db, component)?;
    let latest = steps.len() as i64;
    if current > latest {
        bail!(
            "the database's {component} schema is at version {current}, newer than this host knows ({latest}); upgrade the host"
        );
    }
    for step in &steps[usize::try_from(current).unwrap_or(0)..] {
        let sql = match dialect {
            Dialect::Sqlite => step.sqlite,
            Dialect::Postgres => step.postgres,
            Dialect::MySql => step.mysql,
        };
        let transactional = dialect != Dialect::MySql;
        let apply = |db: &mut Db| -> anyhow::Result<()> {
            // SQLite has no lock before the step's transaction: another process may have
            // applied the step since the version was read.
            if schema_version(db, component)? >= step.version {
                return Ok(());
            }
            for statement in statements(sql) {
                db.batch_execute(statement)?;
            }
            let now = crate::clock::now_rfc3339();
            let changed = db.execute(
                "UPDATE schema_version SET version = ?, updated_at = ? WHERE component = ?",
                &[step.version.into(), now.as_str().into(), component.into()],
            )?;
            if changed == 0 {
                db.execute(
                    "INSERT INTO schema_version (component, version, updated_at) VALUES (?, ?, ?)",
                    &[component.into(), step.version.into(), now.as_str().into()],
                )?;
            }
            Ok(())
        };
        let applied = if transactional {
            db.transaction(apply)
        } else {
            apply(db)
        };
        applied.with_context(|| {
            format!(
                "migrating {component} to version {} ({})",
                step.version, step.description
            )
        })?;
        current = step.version;
    }
    Ok(current)
}

/// The statements of a step: split at a `;` that ends a line.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim())
        .filter(|s| !s.is_empty())
}

/// The migration lock's name (MariaDB) and key (PostgreSQL's advisory lock).
const LOCK_NAME: &str = "scim_provisioner_migrate";
const LOCK_KEY: i64 = 0x5c1e_0001;

fn lock(db: &mut Db) -> anyhow::Result<()> {
    match db.dialect() {
        // A migration on SQLite runs under its write lock, taken per step.
        Dialect::Sqlite => Ok(()),
        Dialect::Postgres => db
            .batch_execute(&format!("SELECT pg_advisory_lock({LOCK_KEY})"))
            .context("taking the migration lock"),
        Dialect::MySql => {
            let got = db
                .query_opt(
                    "SELECT GET_LOCK(?, 120)",
                    &[SqlValue::Text(LOCK_NAME.into())],
                )?
                .map(|r| r.int(0))
                .transpose()?;
            if got != Some(1) {
                bail!("another process held the migration lock for 120 s");
            }
            Ok(())
        }
    }
}

fn unlock(db: &mut Db) {
    let _ = match db.dialect() {
        Dialect::Sqlite => Ok(()),
        Dialect::Postgres => db.batch_execute(&format!("SELECT pg_advisory_unlock({LOCK_KEY})")),
        Dialect::MySql => db
            .query(
                "SELECT RELEASE_LOCK(?)",
                &[SqlValue::Text(LOCK_NAME.into())],
            )
            .map(|_| ()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            version: 1,
            description: "a table",
            sqlite: "CREATE TABLE t (a INTEGER);\nCREATE INDEX t_a ON t(a);",
            postgres: "",
            mysql: "",
        },
        Migration {
            version: 2,
            description: "a column",
            sqlite: "ALTER TABLE t ADD COLUMN b TEXT",
            postgres: "",
            mysql: "",
        },
    ];

    #[test]
    fn sqlite_migrates_once_records_the_version_and_refuses_a_newer_one() {
        let dir = std::env::temp_dir().join(format!("migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = super::super::DatabaseUrl::Sqlite(dir.join("m.db"));
        let mut db = Db::connect(&url).unwrap();
        assert_eq!(schema_version(&mut db, "t").unwrap(), 0);
        assert_eq!(migrate(&mut db, "t", &STEPS[..1]).unwrap(), 1);
        assert_eq!(migrate(&mut db, "t", STEPS).unwrap(), 2);
        assert_eq!(
            migrate(&mut db, "t", STEPS).unwrap(),
            2,
            "nothing left to do"
        );
        db.execute(
            "INSERT INTO t (a, b) VALUES (?, ?)",
            &[1i64.into(), "x".into()],
        )
        .unwrap();
        assert!(
            migrate(&mut db, "t", &STEPS[..1]).is_err(),
            "newer than known"
        );
        assert_eq!(schema_version(&mut db, "other").unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
