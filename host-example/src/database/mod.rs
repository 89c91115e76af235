//! The host's databases: SQLite (the embedded default, one file), PostgreSQL (≥ 15) and
//! MariaDB/MySQL (MariaDB ≥ 10.6), behind one small blocking API.
//!
//! - [`DatabaseUrl`] parses `[host] database` / `--database`: `postgres://…` or
//!   `postgresql://…`, `mysql://…` or `mariadb://…`, else a SQLite path (`sqlite:` prefix
//!   optional). Its `Display` and `Debug` never show the password.
//! - [`Db`] is one open connection of any of the three. SQL is written once with `?`
//!   placeholders ([`Db::execute`], [`Db::query`]); PostgreSQL's `$n` are made from them.
//!   Values are [`SqlValue`]s (integers, text, null), so the same code reads all three.
//! - [`Db::connect_with_retry`] waits for a database that is starting or restarting, with
//!   exponential backoff, up to a deadline.
//! - [`migrate`] brings a schema up to date from ordered [`Migration`] steps (one SQL text
//!   per dialect), recording each component's version in the `schema_version` table, under
//!   a lock so two processes starting at once do not both migrate.
//!
//! Booleans are stored as integers 0/1 on all three, and integer columns are 64-bit
//! (`BIGINT`), so a value reads back the same whatever the database.
//!
//! TLS to PostgreSQL or MariaDB is asked for in the URL, as libpq and the MariaDB client
//! spell it (`sslmode=verify-full&sslrootcert=…`, `ssl-mode=VERIFY_IDENTITY&ssl-ca=…`),
//! with rustls, and always verified: see [`tls`].

mod migrate;
#[cfg(any(test, feature = "db-test-support"))]
pub mod test_support;
pub mod tls;
mod value;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use migrate::{Migration, migrate, schema_version};
pub use value::{Row, SqlValue};

/// Which database a [`DatabaseUrl`] or [`Db`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MariaDB or MySQL.
    MySql,
}

/// Where the database is. The password, when there is one, never appears in `Display`,
/// `Debug` or any error this module makes.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A server URL (`postgres://` or `mysql://`; `mariadb://` is kept as `mysql://`).
    Server {
        /// PostgreSQL or MySQL.
        dialect: Dialect,
        /// The URL, password included.
        url: url::Url,
    },
}

impl DatabaseUrl {
    /// Parses a setting. A relative SQLite path is taken from `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> anyhow::Result<DatabaseUrl> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let scheme = ["postgres://", "postgresql://", "mysql://", "mariadb://"]
            .into_iter()
            .find(|s| lower.starts_with(s));
        let Some(scheme) = scheme else {
            let path = text.strip_prefix("sqlite:").unwrap_or(text);
            if path.is_empty() {
                bail!("the database setting is empty");
            }
            if lower.contains("://") {
                bail!(
                    "unknown database URL scheme in {:?}: use postgres://, mysql:// (or mariadb://), or an SQLite file path",
                    redact_text(text)
                );
            }
            let path = Path::new(path);
            return Ok(DatabaseUrl::Sqlite(if path.is_absolute() {
                path.to_path_buf()
            } else {
                base_dir.join(path)
            }));
        };
        let dialect = if scheme.starts_with("postgres") {
            Dialect::Postgres
        } else {
            Dialect::MySql
        };
        // The url crate keeps a special scheme's rules only for http-like schemes, so
        // parse as given, then name MariaDB's scheme as the mysql crate expects it.
        let rest = &text[scheme.len()..];
        let canonical = match dialect {
            Dialect::Postgres => format!("postgres://{rest}"),
            _ => format!("mysql://{rest}"),
        };
        let url = url::Url::parse(&canonical).map_err(|e| {
            anyhow::anyhow!(
                "the database URL {:?} is not a valid URL: {e}",
                redact_text(text)
            )
        })?;
        if url.host_str().unwrap_or_default().is_empty()
            && !url.query_pairs().any(|(k, _)| k == "host" || k == "socket")
        {
            bail!("the database URL {:?} names no host", redact_text(text));
        }
        Ok(DatabaseUrl::Server { dialect, url })
    }

    /// Which database it is.
    pub fn dialect(&self) -> Dialect {
        match self {
            DatabaseUrl::Sqlite(_) => Dialect::Sqlite,
            DatabaseUrl::Server { dialect, .. } => *dialect,
        }
    }

    /// The SQLite file, for an SQLite URL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DatabaseUrl::Sqlite(p) => Some(p),
            DatabaseUrl::Server { .. } => None,
        }
    }

    /// The URL as shown to people: the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => p.display().to_string(),
            DatabaseUrl::Server { url, .. } => redact_url(url),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    // A password may also come as a query parameter (`?password=…`).
    if shown.query_pairs().any(|(k, _)| is_secret_param(&k)) {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

fn is_secret_param(key: &str) -> bool {
    matches!(
        key.to_ascii_lowercase().as_str(),
        "password" | "pass" | "passwd"
    )
}

/// A setting that did not parse, redacted without trusting it to parse: everything
/// between `://` and the last `@` after it loses its password part.
fn redact_text(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let Some(at) = text[start..].rfind('@').map(|i| i + start) else {
        return text.to_string();
    };
    let userinfo = &text[start..at];
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{}{user}:***{}", &text[..start], &text[at..])
}

/// One open connection. Not shared between threads: each worker opens its own.
pub enum Db {
    /// An SQLite file.
    Sqlite(rusqlite::Connection),
    /// PostgreSQL.
    Postgres(Box<PgConn>),
    /// MariaDB or MySQL.
    MySql(Box<mysql::Conn>),
}

/// A PostgreSQL connection and the statements it has prepared, by SQL text: without
/// them every statement would cost a round trip to prepare it before the one to run it.
pub struct PgConn {
    client: postgres::Client,
    statements: std::collections::HashMap<String, postgres::Statement>,
}

/// Prepared statements kept per connection; past it the cache starts again (statements
/// with `IN (?, ?, …)` lists of every length would otherwise grow it without end).
const PG_STATEMENT_CACHE: usize = 256;

impl PgConn {
    fn statement(&mut self, sql: &str) -> anyhow::Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(&postgres_placeholders(sql))?;
        if self.statements.len() >= PG_STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// How long a single connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Db {
    /// Opens one connection, failing at once if the database does not answer.
    pub fn connect(url: &DatabaseUrl) -> anyhow::Result<Db> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                // Through the host's page cache, as every SQLite file it opens (installed
                // before SQLite's first connection; see crate::sqlite_page_cache).
                let conn = crate::sqlite_page_cache::open(path)
                    .with_context(|| format!("opening the database {}", path.display()))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn.busy_timeout(Duration::from_secs(10))?;
                Ok(Db::Sqlite(conn))
            }
            DatabaseUrl::Server {
                dialect: Dialect::Postgres,
                url: u,
            } => {
                let (u, tls) = tls::take_tls(Dialect::Postgres, u, Path::new(""))
                    .map_err(|e| anyhow::anyhow!("the database URL {url}: {e:#}"))?;
                let mut config: postgres::Config = u
                    .as_str()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("the database URL {url}: {e}"))?;
                config.connect_timeout(CONNECT_TIMEOUT);
                if config.get_application_name().is_none() {
                    config.application_name("scim-provisioner");
                }
                let connected = match &tls {
                    None => config
                        .ssl_mode(postgres::config::SslMode::Disable)
                        .connect(postgres::NoTls),
                    Some(settings) => config
                        .ssl_mode(postgres::config::SslMode::Require)
                        .connect(tls::PgTls::new(settings)?),
                };
                // With its causes (a TLS handshake's reason is one); the URL redacted.
                let mut client = connected
                    .map_err(|e| anyhow::Error::new(e).context(format!("connecting to {url}")))?;
                // Rows are compared and claimed as of each statement's start; that is what
                // the claim's locking read relies on (see crate::store).
                client
                    .batch_execute("SET TIME ZONE 'UTC'")
                    .map_err(|e| anyhow::anyhow!("setting up {url}: {e}"))?;
                Ok(Db::Postgres(Box::new(PgConn {
                    client,
                    statements: std::collections::HashMap::new(),
                })))
            }
            DatabaseUrl::Server { url: u, .. } => {
                let (u, tls) = tls::take_tls(Dialect::MySql, u, Path::new(""))
                    .map_err(|e| anyhow::anyhow!("the database URL {url}: {e:#}"))?;
                let opts = mysql::Opts::from_url(u.as_str())
                    .map_err(|e| anyhow::anyhow!("the database URL {url}: {e}"))?;
                let mut opts = mysql::OptsBuilder::from_opts(opts);
                if let Some(settings) = &tls {
                    // Not the loopback socket the crate would switch to: it bypasses TLS.
                    opts = opts
                        .ssl_opts(Some(tls::mysql_ssl_opts(settings)))
                        .prefer_socket(false);
                }
                let opts = opts
                    .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
                    .read_timeout(Some(Duration::from_secs(60)))
                    .write_timeout(Some(Duration::from_secs(60)))
                    // READ COMMITTED: each statement sees what is committed when it starts,
                    // as on PostgreSQL, so a worker's next claim sees the others' claims.
                    .init(vec![
                        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ANSI_QUOTES'",
                        "SET NAMES utf8mb4",
                        "SET time_zone = '+00:00'",
                    ]);
                let with_tls = if tls.is_some() { " with TLS" } else { "" };
                let conn = mysql::Conn::new(opts)
                    .map_err(|e| anyhow::anyhow!("connecting to {url}{with_tls}: {e}"))?;
                Ok(Db::MySql(Box::new(conn)))
            }
        }
    }

    /// Opens one connection, retrying with exponential backoff (0.1 s, doubling, at most
    /// 5 s between attempts) until `deadline` has passed: a database that is starting,
    /// restarting or failing over is waited for. The last error is returned after it.
    pub fn connect_with_retry(url: &DatabaseUrl, deadline: Duration) -> anyhow::Result<Db> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match Db::connect(url) {
                Ok(db) => return Ok(db),
                // A refused certificate stays refused: say so now, not after the deadline.
                Err(e) if tls::is_certificate_refused(&e) => return Err(e),
                Err(e) if started.elapsed() + wait > deadline => {
                    return Err(e.context(format!(
                        "the database {url} did not answer within {}s",
                        deadline.as_secs()
                    )));
                }
                Err(_) => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
            Db::MySql(_) => Dialect::MySql,
        }
    }

    /// The SQLite connection inside, for code that keeps using rusqlite directly.
    pub fn into_sqlite(self) -> Option<rusqlite::Connection> {
        match self {
            Db::Sqlite(c) => Some(c),
            _ => None,
        }
    }

    /// Runs one statement with `?` placeholders; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[SqlValue]) -> anyhow::Result<u64> {
        match self {
            Db::Sqlite(c) => {
                let n = c
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(params.iter()))?;
                Ok(n as u64)
            }
            Db::Postgres(c) => {
                let statement = c.statement(sql)?;
                let args = value::pg_params(params);
                let refs = value::pg_refs(&args);
                Ok(c.client.execute(&statement, &refs)?)
            }
            Db::MySql(c) => {
                use mysql::prelude::Queryable;
                c.exec_drop(sql, value::my_params(params))?;
                Ok(c.affected_rows())
            }
        }
    }

    /// Runs a query with `?` placeholders; returns every row.
    pub fn query(&mut self, sql: &str, params: &[SqlValue]) -> anyhow::Result<Vec<Row>> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        values.push(value::from_sqlite(r.get_ref(i)?));
                    }
                    Ok(Row(values))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Db::Postgres(c) => {
                let statement = c.statement(sql)?;
                let args = value::pg_params(params);
                let refs = value::pg_refs(&args);
                let rows = c.client.query(&statement, &refs)?;
                rows.iter().map(value::from_pg_row).collect()
            }
            Db::MySql(c) => {
                use mysql::prelude::Queryable;
                let rows: Vec<mysql::Row> = c.exec(sql, value::my_params(params))?;
                rows.into_iter().map(value::from_my_row).collect()
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[SqlValue]) -> anyhow::Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs several statements without parameters (DDL, `BEGIN` …).
    pub fn batch_execute(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql)?,
            Db::Postgres(c) => c.client.batch_execute(sql)?,
            Db::MySql(c) => {
                use mysql::prelude::Queryable;
                c.query_drop(sql)?;
            }
        }
        Ok(())
    }

    /// Starts a transaction (on SQLite one that takes the write lock at once).
    pub fn begin(&mut self) -> anyhow::Result<()> {
        self.batch_execute(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
            Dialect::MySql => "START TRANSACTION",
        })
    }

    /// Commits the transaction [`Db::begin`] started.
    pub fn commit(&mut self) -> anyhow::Result<()> {
        self.batch_execute("COMMIT")
    }

    /// Rolls it back; an error here is ignored, as the connection may be gone (and with it
    /// the transaction).
    pub fn rollback(&mut self) {
        let _ = self.batch_execute("ROLLBACK");
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Db) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.begin()?;
        match f(self) {
            Ok(v) => {
                self.commit()?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// True when the connection still answers; false when it was lost (the server went
    /// away or restarted), so the caller should connect again.
    pub fn is_alive(&mut self) -> bool {
        match self {
            Db::Sqlite(_) => true,
            Db::Postgres(c) => !c.client.is_closed() && c.client.simple_query("SELECT 1").is_ok(),
            Db::MySql(c) => c.ping().is_ok(),
        }
    }
}

/// True when `error` is a unique-key violation (PostgreSQL `23505`, MariaDB `1062`,
/// SQLite's constraint failure on a unique index).
pub fn is_unique_violation(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<postgres::Error>() {
            return e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION);
        }
        if let Some(mysql::Error::MySqlError(e)) = cause.downcast_ref::<mysql::Error>() {
            return e.code == 1062;
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = cause.downcast_ref::<rusqlite::Error>()
        {
            return f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
        }
        false
    })
}

/// `?` placeholders as PostgreSQL's `$1, $2 …`; a `?` inside a quoted string or
/// identifier is left alone.
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let base = Path::new("/etc/scim");
        let pg = DatabaseUrl::parse("postgres://scim:s3cret@db.example:5433/scim", base).unwrap();
        assert_eq!(pg.dialect(), Dialect::Postgres);
        assert_eq!(pg.to_string(), "postgres://scim:***@db.example:5433/scim");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let my = DatabaseUrl::parse("MariaDB://scim:p%40ss@127.0.0.1/scim", base).unwrap();
        assert_eq!(my.dialect(), Dialect::MySql);
        assert!(!my.to_string().contains("p%40ss") && my.to_string().starts_with("mysql://"));
        let q = DatabaseUrl::parse(
            "postgresql://scim@h/db?password=hunter2&sslmode=disable",
            base,
        )
        .unwrap();
        assert!(!q.to_string().contains("hunter2"), "{q}");
        assert_eq!(
            DatabaseUrl::parse("store.db", base).unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/etc/scim/store.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:/var/lib/s.db", base).unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/var/lib/s.db"))
        );
        let bad = DatabaseUrl::parse("oracle://u:topsecret@h/db", base).unwrap_err();
        assert!(!format!("{bad:#}").contains("topsecret"), "{bad:#}");
        let bad = DatabaseUrl::parse("postgres://u:topsecret@[::1/db", base).unwrap_err();
        assert!(!format!("{bad:#}").contains("topsecret"), "{bad:#}");
        assert!(DatabaseUrl::parse("  ", base).is_err());
    }

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            postgres_placeholders("SELECT '?', \"a?\" FROM t WHERE a = ? AND b = ?"),
            "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = $2"
        );
    }

    #[test]
    fn a_connection_error_names_the_database_without_its_password() {
        let url = DatabaseUrl::parse("postgres://scim:topsecret@127.0.0.1:1/scim", Path::new("/"))
            .unwrap();
        let err = Db::connect_with_retry(&url, Duration::from_millis(300))
            .err()
            .expect("nothing listens on port 1");
        let text = format!("{err:#}");
        assert!(
            !text.contains("topsecret") && text.contains("127.0.0.1"),
            "{text}"
        );
    }
}
