//! A connection to PostgreSQL or MariaDB for the shared directory: the host's
//! [`crate::database::Db`] (one SQL text with `?` placeholders on every engine), with what
//! the directory adds: its failures sorted into a unique constraint, a lost race to run
//! again, a lost connection, and the rest; transactions retried when they lost a race; and
//! a connection that failed below SQL (the server went away, a reset socket) opened again
//! by the next call, so a `serve` worker outlives a database restart: the request that met
//! the failure is answered 503, the next one reconnects.

use crate::database::{DatabaseUrl, Db, Dialect, Row, SqlValue};
use crate::types::DirectoryError;

/// Why a statement failed, as far as the directory cares.
#[derive(Debug)]
pub(super) enum Failure {
    /// A unique constraint (PostgreSQL 23505, MariaDB 1062).
    Unique,
    /// The transaction lost to a concurrent one and can run again: a deadlock, a
    /// serialization failure, a lock wait that timed out.
    Retry(String),
    /// The connection is gone; it is opened again on the next call.
    Lost(String),
    /// Anything else the server reported.
    Other(String),
}

impl Failure {
    pub(super) fn into_directory_error(self) -> DirectoryError {
        match self {
            Failure::Unique => DirectoryError::Conflict("the value is already taken".into()),
            Failure::Retry(m) => DirectoryError::Unavailable(format!("busy: {m}")),
            Failure::Lost(m) => DirectoryError::Unavailable(m),
            Failure::Other(m) => DirectoryError::Other(format!("database: {m}")),
        }
    }
}

/// A connection to the shared database, opened again after it was lost.
pub(super) struct Conn {
    url: DatabaseUrl,
    db: Option<Db>,
}

impl Conn {
    /// Connects to `url` (PostgreSQL or MariaDB/MySQL), waiting up to `wait` for a
    /// database that is starting.
    pub(super) fn connect(url: &DatabaseUrl, wait: std::time::Duration) -> anyhow::Result<Conn> {
        if url.dialect() == Dialect::Sqlite {
            anyhow::bail!("the shared directory needs a postgres:// or mysql:// database");
        }
        let db = Db::connect_with_retry(url, wait)?;
        Ok(Conn {
            url: url.clone(),
            db: Some(db),
        })
    }

    /// The open connection, for the host's migrations.
    pub(super) fn db(&mut self) -> Result<&mut Db, Failure> {
        if self.db.is_none() {
            let db = Db::connect(&self.url).map_err(|e| Failure::Lost(format!("{e:#}")))?;
            self.db = Some(db);
        }
        self.db
            .as_mut()
            .ok_or_else(|| Failure::Lost("no connection".into()))
    }

    /// Runs `f` on the connection; a failure that lost it drops it.
    fn with<T>(&mut self, f: impl FnOnce(&mut Db) -> anyhow::Result<T>) -> Result<T, Failure> {
        let out = f(self.db()?).map_err(|e| classify(&e));
        if let Err(Failure::Lost(_)) = &out {
            self.db = None;
        }
        out
    }

    /// The rows of a query.
    pub(super) fn rows(&mut self, sql: &str, args: &[SqlValue]) -> Result<Vec<Row>, Failure> {
        self.with(|db| db.query(sql, args))
    }

    /// Runs a statement; the rows it changed.
    pub(super) fn exec(&mut self, sql: &str, args: &[SqlValue]) -> Result<u64, Failure> {
        self.with(|db| db.execute(sql, args))
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`, rolled back when it
    /// fails; run again (up to `attempts` times) when it lost to a concurrent transaction
    /// ([`Failure::Retry`]), so a deadlock between two `serve` processes costs a retry
    /// rather than an error.
    pub(super) fn transaction<T>(
        &mut self,
        attempts: u32,
        mut f: impl FnMut(&mut Conn) -> Result<T, TxError>,
    ) -> Result<T, DirectoryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let begun = self.with(Db::begin).map_err(TxError::Sql);
            let out = begun
                .and_then(|()| f(self))
                .and_then(|v| self.with(Db::commit).map(|()| v).map_err(TxError::Sql));
            let e = match out {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if let Some(db) = self.db.as_mut() {
                // A connection that cannot roll back is not used again.
                if db.batch_execute("ROLLBACK").is_err() {
                    self.db = None;
                }
            }
            match e {
                TxError::Sql(Failure::Retry(_)) if attempt < attempts => {
                    // Let the transaction that won finish first.
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(attempt) * 5));
                }
                TxError::Sql(f) => return Err(f.into_directory_error()),
                TxError::Directory(d) => return Err(d),
            }
        }
    }
}

/// Sorts an error from the host's database layer by its driver's error.
fn classify(e: &anyhow::Error) -> Failure {
    if let Some(pg) = e.chain().find_map(|c| c.downcast_ref::<postgres::Error>()) {
        return classify_pg(pg);
    }
    if let Some(my) = e.chain().find_map(|c| c.downcast_ref::<mysql::Error>()) {
        return classify_mysql(my);
    }
    Failure::Other(format!("{e:#}"))
}

fn classify_pg(e: &postgres::Error) -> Failure {
    use postgres::error::SqlState;
    let text = || match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None if e.is_closed() => "the connection to PostgreSQL is closed".into(),
        None => format!("PostgreSQL: {e}"),
    };
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Failure::Unique,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
        {
            Failure::Retry(text())
        }
        // The server is shutting down or restarting, or the connection broke.
        Some(c) if c.code().starts_with("57P") || c.code().starts_with("08") => {
            Failure::Lost(text())
        }
        Some(_) => Failure::Other(text()),
        None => Failure::Lost(text()),
    }
}

fn classify_mysql(e: &mysql::Error) -> Failure {
    match e {
        mysql::Error::MySqlError(m) => match m.code {
            1062 => Failure::Unique,
            // Deadlock, lock wait timeout.
            1213 | 1205 => Failure::Retry(format!("{}: {}", m.code, m.message)),
            // Server shutdown, connection killed, server gone.
            1053 | 1927 | 2006 | 2013 => Failure::Lost(format!("{}: {}", m.code, m.message)),
            _ => Failure::Other(format!("{}: {}", m.code, m.message)),
        },
        mysql::Error::IoError(e) => Failure::Lost(format!("MariaDB connection: {e}")),
        mysql::Error::DriverError(e) => Failure::Lost(format!("MariaDB driver: {e}")),
        other => Failure::Lost(format!("MariaDB: {other}")),
    }
}

/// A failure inside a transaction: the database's, or the directory's own answer (a
/// version mismatch, a conflict) that rolls it back.
#[derive(Debug)]
pub(super) enum TxError {
    Sql(Failure),
    Directory(DirectoryError),
}

impl From<Failure> for TxError {
    fn from(f: Failure) -> Self {
        TxError::Sql(f)
    }
}

impl From<DirectoryError> for TxError {
    fn from(d: DirectoryError) -> Self {
        TxError::Directory(d)
    }
}
