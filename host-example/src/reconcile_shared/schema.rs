//! The shared reconcile's tables, a schema component of their own (`reconcile` in
//! `schema_version`), the same logical schema on the three databases. Only a daemon on a
//! shared database (PostgreSQL, MariaDB) creates them: on SQLite one process runs the
//! sync, as before.
//!
//! - `reconcile_schedule`: one row (id 1), locked by whoever starts a run, so the schedule
//!   is one for every daemon: when the next run is due, when the next verifying one is, the
//!   run in progress and the last run's id.
//! - `reconcile_runs`: one row per run (its state, its listing's lease while it is taken,
//!   the deprovisioning budget it shares out).
//! - `reconcile_listing`: a run's remote listing (`export-remote-index`), in chunks.
//! - `reconcile_partitions`: a run's partitions (a range of user ids each, and one for the
//!   links whose user is gone), each claimed under a lease like an outbox event.

use crate::database::Migration;

/// The shared reconcile's component name in `schema_version`.
pub const RECONCILE_COMPONENT: &str = "reconcile";

/// The shared reconcile's migrations, oldest first.
pub const RECONCILE_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "the shared reconcile: schedule, runs, listing chunks, partitions",
    sqlite: "
CREATE TABLE IF NOT EXISTS reconcile_schedule (
    id INTEGER PRIMARY KEY,
    next_run_ms INTEGER NOT NULL,
    next_verify_ms INTEGER NOT NULL,
    run_id INTEGER,
    last_run_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO reconcile_schedule (id, next_run_ms, next_verify_ms, run_id, last_run_id)
    VALUES (1, 0, 0, NULL, 0);
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    full_sync INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    started_by TEXT NOT NULL,
    listing_by TEXT,
    listing_until INTEGER,
    listed INTEGER,
    listing_bytes INTEGER,
    budget INTEGER NOT NULL,
    deprovisions INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT,
    note TEXT
);
CREATE TABLE IF NOT EXISTS reconcile_listing (
    run_id INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, chunk)
);
CREATE TABLE IF NOT EXISTS reconcile_partitions (
    run_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    kind TEXT NOT NULL,
    id_after TEXT,
    id_upto TEXT,
    claimed_by TEXT,
    claimed_until INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0,
    done_at TEXT,
    done_by TEXT,
    summary TEXT,
    PRIMARY KEY (run_id, part)
);",
    postgres: "
CREATE TABLE IF NOT EXISTS reconcile_schedule (
    id BIGINT PRIMARY KEY,
    next_run_ms BIGINT NOT NULL,
    next_verify_ms BIGINT NOT NULL,
    run_id BIGINT,
    last_run_id BIGINT NOT NULL
);
INSERT INTO reconcile_schedule (id, next_run_ms, next_verify_ms, run_id, last_run_id)
    VALUES (1, 0, 0, NULL, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id BIGINT PRIMARY KEY,
    state TEXT NOT NULL,
    full_sync BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    started_by TEXT NOT NULL,
    listing_by TEXT,
    listing_until BIGINT,
    listed BIGINT,
    listing_bytes BIGINT,
    budget BIGINT NOT NULL,
    deprovisions BIGINT NOT NULL DEFAULT 0,
    finished_at TEXT,
    note TEXT
);
CREATE TABLE IF NOT EXISTS reconcile_listing (
    run_id BIGINT NOT NULL,
    chunk BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, chunk)
);
CREATE TABLE IF NOT EXISTS reconcile_partitions (
    run_id BIGINT NOT NULL,
    part BIGINT NOT NULL,
    kind TEXT NOT NULL,
    id_after TEXT,
    id_upto TEXT,
    claimed_by TEXT,
    claimed_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    done_at TEXT,
    done_by TEXT,
    summary TEXT,
    PRIMARY KEY (run_id, part)
);",
    // Ids compare as the store's `users.id` does (`utf8mb4_bin`), so a partition's range
    // is the same range in both tables.
    mysql: "
CREATE TABLE IF NOT EXISTS reconcile_schedule (
    id BIGINT NOT NULL PRIMARY KEY,
    next_run_ms BIGINT NOT NULL,
    next_verify_ms BIGINT NOT NULL,
    run_id BIGINT NULL,
    last_run_id BIGINT NOT NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO reconcile_schedule (id, next_run_ms, next_verify_ms, run_id, last_run_id)
    VALUES (1, 0, 0, NULL, 0);
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id BIGINT NOT NULL PRIMARY KEY,
    state VARCHAR(16) NOT NULL,
    full_sync BIGINT NOT NULL,
    started_at VARCHAR(40) NOT NULL,
    started_ms BIGINT NOT NULL,
    started_by VARCHAR(191) COLLATE utf8mb4_bin NOT NULL,
    listing_by VARCHAR(191) COLLATE utf8mb4_bin NULL,
    listing_until BIGINT NULL,
    listed BIGINT NULL,
    listing_bytes BIGINT NULL,
    budget BIGINT NOT NULL,
    deprovisions BIGINT NOT NULL DEFAULT 0,
    finished_at VARCHAR(40) NULL,
    note TEXT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS reconcile_listing (
    run_id BIGINT NOT NULL,
    chunk BIGINT NOT NULL,
    body LONGTEXT NOT NULL,
    PRIMARY KEY (run_id, chunk)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS reconcile_partitions (
    run_id BIGINT NOT NULL,
    part BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    id_after VARCHAR(191) COLLATE utf8mb4_bin NULL,
    id_upto VARCHAR(191) COLLATE utf8mb4_bin NULL,
    claimed_by VARCHAR(191) COLLATE utf8mb4_bin NULL,
    claimed_until BIGINT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    reserved BIGINT NOT NULL DEFAULT 0,
    done_at VARCHAR(40) NULL,
    done_by VARCHAR(191) COLLATE utf8mb4_bin NULL,
    summary TEXT NULL,
    PRIMARY KEY (run_id, part)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;",
}];
