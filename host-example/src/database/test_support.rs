//! Throwaway database servers for tests (cargo feature `db-test-support`): a PostgreSQL
//! and a MariaDB of the test's own, each its own process on a free loopback port with its
//! data in a fresh temporary directory, waited for by connecting (never a fixed sleep), and
//! stopped and removed on drop. Debian's `postgresql` and `mariadb-server` packages provide
//! the programs; the system services are never used.
//!
//! When the tests run as root (as in CI), PostgreSQL runs as the `postgres` user through
//! `runuser` (it refuses root) and `mariadbd` drops to `mysql` itself.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use host_example::database::test_support::TestPostgres;
//! let pg = TestPostgres::start()?;
//! let url = pg.create_database("store_test")?; // postgres://scim:…@127.0.0.1:PORT/store_test
//! # Ok(()) }
//! ```

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{DatabaseUrl, Db};

/// How long a server may take to accept connections (a loaded 2-core CI machine).
const READY_WITHIN: Duration = Duration::from_secs(120);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str, user: &str) -> anyhow::Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    if !out.status.success() {
        bail!("no user {user} on this machine");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

fn chown_to(path: &Path, user: &str) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(id_of("-u", user)?), Some(id_of("-g", user)?))
        .with_context(|| format!("giving {} to {user}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(prefix: &str) -> anyhow::Result<TempRoot> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            crate::clock::now_ms()
        ));
        std::fs::create_dir_all(&dir)?;
        // The server's user must be able to enter it; its data directory below is 0700.
        set_mode(&dir, 0o755)?;
        Ok(TempRoot(dir))
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_password() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::getrandom(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends `signal` (`-INT`, `-TERM`, `-KILL`) to the process whose pid is the first line of
/// `pid_file`, and waits for it to be gone.
fn signal_and_wait(pid_file: &Path, signal: &str, within: Duration) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let Some(pid) = text.lines().next().map(str::trim).filter(|p| !p.is_empty()) else {
        return false;
    };
    let _ = Command::new("kill").args([signal, pid]).status();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let started = Instant::now();
    while proc_dir.exists() && started.elapsed() < within {
        std::thread::sleep(Duration::from_millis(20));
    }
    !proc_dir.exists()
}

fn wait_ready(child: &mut Child, url: &DatabaseUrl, log: &Path, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{what} exited ({status}) before accepting connections:\n{}",
                tail(log)
            );
        }
        match Db::connect(url) {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > READY_WITHIN => {
                bail!(
                    "{what} did not accept connections within {READY_WITHIN:?}: {e:#}\n{}",
                    tail(log)
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn log_file(path: &Path) -> anyhow::Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(path)?))
}

/// Certificates for a TLS test, made with the `openssl` command: a CA, a server
/// certificate it signed for the DNS name `localhost` only (so connecting to `127.0.0.1`
/// fails a host name check and passes a chain check), and a second CA that signed nothing
/// here (a wrong CA). Removed on drop.
pub struct TestCertificates {
    root: TempRoot,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (Debian's openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl TestCertificates {
    /// Makes the two CAs and the server's certificate and key (P-256, valid for 2 days).
    pub fn make() -> anyhow::Result<TestCertificates> {
        let root = TempRoot::new("scim-test-certs")?;
        let dir = &root.0;
        for (name, cn) in [("ca", "scim test CA"), ("other-ca", "scim other CA")] {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={cn}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            )?;
        }
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        )?;
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        )?;
        Ok(TestCertificates { root })
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.root.0.join("ca.pem")
    }

    /// A CA that signed nothing the servers use (PEM).
    pub fn other_ca_file(&self) -> PathBuf {
        self.root.0.join("other-ca.pem")
    }

    /// Copies the server's certificate and key into `dir`, readable only by `owner` (the
    /// server's user when the tests run as root); returns their paths.
    fn install(&self, dir: &Path, owner: Option<&str>) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        std::fs::copy(self.root.0.join("server.pem"), &cert)?;
        std::fs::copy(self.root.0.join("server.key"), &key)?;
        set_mode(&key, 0o600)?;
        if let Some(user) = owner {
            chown_to(&cert, user)?;
            chown_to(&key, user)?;
        }
        Ok((cert, key))
    }
}

/// A PostgreSQL of the test's own. Its superuser is `scim`, with a random password.
pub struct TestPostgres {
    root: TempRoot,
    bin: PathBuf,
    port: u16,
    password: String,
    child: Option<Child>,
    as_postgres: bool,
    /// With TLS on: the server's certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
}

/// The newest PostgreSQL's programs (`/usr/lib/postgresql/<version>/bin`).
fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql; Debian's postgresql)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!("no PostgreSQL server under /usr/lib/postgresql"),
    }
}

impl TestPostgres {
    /// initdb in a fresh directory, then the server on a free loopback port; returns once
    /// it accepts connections.
    pub fn start() -> anyhow::Result<TestPostgres> {
        Self::start_with(None)
    }

    /// [`TestPostgres::start`] with TLS on (`ssl=on`), serving `certs`' server certificate;
    /// connections without TLS are still accepted.
    pub fn start_with_tls(certs: &TestCertificates) -> anyhow::Result<TestPostgres> {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCertificates>) -> anyhow::Result<TestPostgres> {
        let bin = postgres_bin()?;
        let root = TempRoot::new("scim-test-postgres")?;
        let as_postgres = is_root();
        let data = root.0.join("data");
        std::fs::create_dir_all(&data)?;
        set_mode(&data, 0o700)?;
        let password = random_password();
        // The Unix socket's directory: the server's own.
        let run = root.0.join("run");
        std::fs::create_dir_all(&run)?;
        set_mode(&run, 0o700)?;
        let pwfile = root.0.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))?;
        if as_postgres {
            chown_to(&data, "postgres")?;
            chown_to(&run, "postgres")?;
            chown_to(&pwfile, "postgres")?;
        }
        let mut initdb = Self::command(as_postgres, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "scim",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync"]);
        let out = initdb.output().context("running initdb")?;
        let _ = std::fs::remove_file(&pwfile);
        if !out.status.success() {
            bail!(
                "initdb failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tls = certs
            .map(|c| c.install(&root.0, as_postgres.then_some("postgres")))
            .transpose()?;
        let mut pg = TestPostgres {
            root,
            bin,
            port: free_port()?,
            password,
            child: None,
            as_postgres,
            tls,
        };
        pg.start_again()?;
        Ok(pg)
    }

    fn command(as_postgres: bool, program: &Path) -> Command {
        if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Starts the server again after [`TestPostgres::stop`] (same data, same port).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let data = self.root.0.join("data");
        let log = self.root.0.join("postgres.log");
        let mut cmd = Self::command(self.as_postgres, &self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.root.0.join("run"))
            // Small and quick: a test database, not a production one.
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .args(["-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&self.root.0.join("postgres.err"))?);
        if let Some((cert, key)) = &self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        let mut child = cmd.spawn().context("starting postgres")?;
        let url = DatabaseUrl::parse(&self.url_for("postgres"), Path::new("/"))?;
        if let Err(e) = wait_ready(
            &mut child,
            &url,
            &self.root.0.join("postgres.err"),
            "postgres",
        ) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid_file = self.root.0.join("data").join("postmaster.pid");
            if !signal_and_wait(&pid_file, "-INT", Duration::from_secs(60)) {
                signal_and_wait(&pid_file, "-KILL", Duration::from_secs(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on it, as the superuser (password included).
    pub fn url_for(&self, name: &str) -> String {
        format!(
            "postgres://scim:{}@127.0.0.1:{}/{name}",
            self.password, self.port
        )
    }

    /// Creates an empty database `name` (letters, digits, `_`); returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("database name {name:?}: letters, digits and _ only");
        }
        let admin = DatabaseUrl::parse(&self.url_for("postgres"), Path::new("/"))?;
        let mut db = Db::connect(&admin)?;
        db.batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url_for(name))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A MariaDB of the test's own; root over its Unix socket, and a user with a random
/// password per database created.
pub struct TestMariaDb {
    root: TempRoot,
    port: u16,
    child: Option<Child>,
    as_root: bool,
    /// With TLS on: the server's certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
}

impl TestMariaDb {
    /// mariadb-install-db in a fresh directory, then mariadbd on a free loopback port;
    /// returns once it accepts connections.
    pub fn start() -> anyhow::Result<TestMariaDb> {
        Self::start_with(None)
    }

    /// [`TestMariaDb::start`] with TLS on, serving `certs`' server certificate;
    /// connections without TLS are still accepted.
    pub fn start_with_tls(certs: &TestCertificates) -> anyhow::Result<TestMariaDb> {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&TestCertificates>) -> anyhow::Result<TestMariaDb> {
        let root = TempRoot::new("scim-test-mariadb")?;
        let as_root = is_root();
        let data = root.0.join("data");
        std::fs::create_dir_all(&data)?;
        set_mode(&data, 0o700)?;
        if as_root {
            chown_to(&data, "mysql")?;
        }
        // Once more on failure, in an emptied directory: on a loaded machine its bootstrap
        // server has been seen to fail once and succeed the next time.
        let mut out = None;
        for _attempt in 0..2 {
            let mut install = Command::new("mariadb-install-db");
            install
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
            if as_root {
                install.arg("--user=mysql");
            }
            let done = install
                .output()
                .context("running mariadb-install-db (Debian's mariadb-server)")?;
            if done.status.success() {
                out = Some(done);
                break;
            }
            for entry in std::fs::read_dir(&data)?.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
            out = Some(done);
        }
        let out = out.context("mariadb-install-db did not run")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tls = certs
            .map(|c| c.install(&root.0, as_root.then_some("mysql")))
            .transpose()?;
        let mut db = TestMariaDb {
            root,
            port: free_port()?,
            child: None,
            as_root,
            tls,
        };
        db.start_again()?;
        Ok(db)
    }

    fn socket(&self) -> PathBuf {
        self.root.0.join("mariadb.sock")
    }

    /// Starts the server again after [`TestMariaDb::stop`] (same data, same port).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = self.root.0.join("mariadbd.log");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.root.0.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                self.root.0.join("mariadbd.pid").display()
            ))
            .args([
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=200",
                "--innodb-flush-log-at-trx-commit=2",
            ])
            .arg(format!("--log-error={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((cert, key)) = &self.tls {
            cmd.arg(format!("--ssl-cert={}", cert.display()))
                .arg(format!("--ssl-key={}", key.display()));
        }
        if self.as_root {
            cmd.arg("--user=mysql");
            // mariadbd writes its log and pid file as mysql.
            chown_to(&self.root.0, "mysql")?;
        }
        let mut child = cmd.spawn().context("starting mariadbd")?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("mariadbd exited ({status}):\n{}", tail(&log));
            }
            if self.client(None, "SELECT 1").is_ok() {
                break;
            }
            if started.elapsed() > READY_WITHIN {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "mariadbd did not accept connections within {READY_WITHIN:?}:\n{}",
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Runs SQL as root over the socket with the `mariadb` client.
    fn client(&self, database: Option<&str>, sql: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg("-S")
            .arg(self.socket())
            .args(["-uroot", "-N", "-B", "-e", sql]);
        if let Some(d) = database {
            cmd.arg(d);
        }
        let out = cmd.output().context("running the mariadb client")?;
        if !out.status.success() {
            bail!("mariadb: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (SIGTERM, a clean shutdown), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database `name` (letters, digits, `_`) and a user of its own for
    /// 127.0.0.1 with a random password; returns the `mysql://` URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > 32 {
            bail!("database name {name:?}: letters, digits and _ only, at most 32");
        }
        let password = random_password();
        self.client(
            None,
            &format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
                 CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY '{password}';
                 GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'127.0.0.1';"
            ),
        )?;
        Ok(format!(
            "mysql://{name}:{password}@127.0.0.1:{}/{name}",
            self.port
        ))
    }
}

impl TestMariaDb {
    /// Makes the user of database `name` (from [`TestMariaDb::create_database`]) connect
    /// only over TLS (`REQUIRE SSL`): a connection without it is refused.
    pub fn require_tls_for(&self, name: &str) -> anyhow::Result<()> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("database name {name:?}: letters, digits and _ only");
        }
        self.client(
            None,
            &format!("ALTER USER '{name}'@'127.0.0.1' REQUIRE SSL"),
        )?;
        Ok(())
    }
}

impl Drop for TestMariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which throwaway server a test runs on, for a test written once and run on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestDatabaseKind {
    /// [`TestPostgres`].
    Postgres,
    /// [`TestMariaDb`].
    MariaDb,
}

/// Either throwaway server, for a test written once for both (and that stops and starts
/// the database under running processes). Stopped on drop.
pub enum TestDatabase {
    /// A [`TestPostgres`].
    Postgres(TestPostgres),
    /// A [`TestMariaDb`].
    MariaDb(TestMariaDb),
}

impl TestDatabase {
    /// Starts a server of `kind` and creates the empty database `name` on it (see
    /// [`TestPostgres::create_database`]); returns the server and the database's URL.
    pub fn start_with_database(
        kind: TestDatabaseKind,
        name: &str,
    ) -> anyhow::Result<(TestDatabase, String)> {
        Ok(match kind {
            TestDatabaseKind::Postgres => {
                let server = TestPostgres::start()?;
                let url = server.create_database(name)?;
                (TestDatabase::Postgres(server), url)
            }
            TestDatabaseKind::MariaDb => {
                let server = TestMariaDb::start()?;
                let url = server.create_database(name)?;
                (TestDatabase::MariaDb(server), url)
            }
        })
    }

    /// Stops the server (its data stays, for [`TestDatabase::start_again`]).
    pub fn stop(&mut self) {
        match self {
            TestDatabase::Postgres(server) => server.stop(),
            TestDatabase::MariaDb(server) => server.stop(),
        }
    }

    /// Starts the stopped server again on the same port and data; returns once it
    /// accepts connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        match self {
            TestDatabase::Postgres(server) => server.start_again(),
            TestDatabase::MariaDb(server) => server.start_again(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both servers start, take a database of their own, survive a stop and start, and
    /// refuse a wrong password.
    #[test]
    fn throwaway_servers_start_stop_and_start_again() {
        let mut pg = TestPostgres::start().unwrap();
        let url = DatabaseUrl::parse(&pg.create_database("t1").unwrap(), Path::new("/")).unwrap();
        let mut db = Db::connect(&url).unwrap();
        db.batch_execute("CREATE TABLE t (a BIGINT)").unwrap();
        db.execute("INSERT INTO t (a) VALUES (?)", &[7i64.into()])
            .unwrap();
        pg.stop();
        assert!(!db.is_alive());
        pg.start_again().unwrap();
        let mut db = Db::connect_with_retry(&url, Duration::from_secs(30)).unwrap();
        assert_eq!(
            db.query("SELECT a FROM t", &[]).unwrap()[0].int(0).unwrap(),
            7
        );

        let mut maria = TestMariaDb::start().unwrap();
        let text = maria.create_database("t1").unwrap();
        let url = DatabaseUrl::parse(&text, Path::new("/")).unwrap();
        let mut db = Db::connect(&url).unwrap();
        db.batch_execute("CREATE TABLE t (a BIGINT, b TEXT)")
            .unwrap();
        db.execute(
            "INSERT INTO t (a, b) VALUES (?, ?)",
            &[7i64.into(), "x".into()],
        )
        .unwrap();
        maria.stop();
        assert!(!db.is_alive());
        maria.start_again().unwrap();
        let mut db = Db::connect_with_retry(&url, Duration::from_secs(30)).unwrap();
        let row = db.query("SELECT a, b FROM t", &[]).unwrap().remove(0);
        assert_eq!((row.int(0).unwrap(), row.text(1).unwrap()), (7, "x".into()));
        let wrong = text
            .replacen(':', "#", 2)
            .replacen('#', ":", 1)
            .replace('#', ":x");
        let wrong = DatabaseUrl::parse(&wrong, Path::new("/")).unwrap();
        assert!(Db::connect(&wrong).is_err());
    }
}
