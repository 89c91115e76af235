//! TLS to PostgreSQL and MariaDB/MySQL, with rustls (no OpenSSL), asked for in the URL with
//! the parameters operators know from libpq and the MariaDB/MySQL clients:
//!
//! | PostgreSQL `sslmode` | MariaDB `ssl-mode` | what is checked |
//! |---|---|---|
//! | absent, `disable` | absent, `DISABLED` | no TLS (loopback, a socket, a private network) |
//! | `require`, `verify-full` | `REQUIRED`, `VERIFY_IDENTITY` (or `ssl=true`) | the chain to a trusted CA, and the host name (or IP) in the URL against the certificate |
//! | `verify-ca` | `VERIFY_CA` | the chain only (a certificate that names another host) |
//! | `allow`, `prefer` | `PREFERRED` | refused: they fall back to a connection without TLS |
//!
//! Verification is on whenever TLS is: unlike libpq, `require` checks the certificate as
//! `verify-full` does, since a connection that checks nothing stops no one in the middle.
//! The trusted CAs are the file named by `sslrootcert` (PostgreSQL) or `ssl-ca` (MariaDB;
//! also `ssl_ca`), PEM; without one, Mozilla's list of public CAs (webpki-roots), which
//! `sslrootcert=system` also names. On PostgreSQL the file replaces that list; the mysql
//! crate always adds its file to it.
//!
//! These parameters are taken out of the URL here, and the rest goes to the driver as
//! before; the URL's password never appears in an error from this module. The mysql
//! crate's own `danger_accept_invalid_certs` and `danger_skip_domain_validation` are
//! refused, so there is no way to ask for TLS that checks nothing.
//!
//! The postgres crate takes TLS through a connector ([`PgTls`], over tokio-rustls); SCRAM
//! runs without channel binding, which a verified certificate makes redundant.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, bail};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Dialect;

/// What a TLS connection checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVerify {
    /// The chain to a trusted CA, and the host name against the certificate.
    Full,
    /// The chain only.
    Chain,
}

/// TLS as a database URL asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// What is checked.
    pub verify: TlsVerify,
    /// The trusted CAs (PEM); `None` for Mozilla's list of public CAs.
    pub ca_file: Option<PathBuf>,
}

/// Takes the TLS parameters out of a server URL: the URL for the driver, and the TLS it
/// asks for (`None`: none). A mode that would fall back to no TLS or check nothing, or a
/// CA file that holds no certificate, is an error naming the parameter.
pub fn take_tls(
    dialect: Dialect,
    url: &url::Url,
    base_dir: &Path,
) -> anyhow::Result<(url::Url, Option<TlsSettings>)> {
    let mut mode: Option<(String, String)> = None;
    let mut ca: Option<(String, String)> = None;
    let mut rest: Vec<(String, String)> = Vec::new();
    for (key, value) in url.query_pairs() {
        let (key, value) = (key.into_owned(), value.into_owned());
        let lower = key.to_ascii_lowercase();
        match (dialect, lower.as_str()) {
            (Dialect::Postgres, "sslmode")
            | (Dialect::MySql, "ssl-mode" | "ssl_mode" | "sslmode" | "ssl") => {
                mode = Some((key, value));
            }
            (Dialect::Postgres, "sslrootcert")
            | (Dialect::MySql, "ssl-ca" | "ssl_ca" | "root_cert_path") => {
                ca = Some((key, value));
            }
            (Dialect::MySql, "danger_accept_invalid_certs" | "danger_skip_domain_validation") => {
                bail!(
                    "the database URL parameter {key} is not supported: TLS to the database is \
                     always verified (use ssl-mode=VERIFY_CA to skip only the host name check)"
                );
            }
            _ => rest.push((key, value)),
        }
    }
    let mut stripped = url.clone();
    if rest.is_empty() {
        stripped.set_query(None);
    } else {
        stripped.query_pairs_mut().clear().extend_pairs(rest);
    }
    let verify = match &mode {
        None => None,
        Some((key, value)) => parse_mode(dialect, key, value)?,
    };
    let Some(verify) = verify else {
        if let Some((key, _)) = ca {
            bail!(
                "the database URL names a CA ({key}) but no TLS: add {}",
                match dialect {
                    Dialect::Postgres => "sslmode=verify-full",
                    _ => "ssl-mode=VERIFY_IDENTITY",
                }
            );
        }
        return Ok((stripped, None));
    };
    let ca_file = match ca {
        Some((_, value)) if value.eq_ignore_ascii_case("system") => None,
        Some((key, value)) => {
            let path = Path::new(&value);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                base_dir.join(path)
            };
            // Read now, so a wrong path fails with its name rather than at the handshake.
            load_roots(&path).with_context(|| format!("the database URL's {key}"))?;
            Some(path)
        }
        None => None,
    };
    Ok((stripped, Some(TlsSettings { verify, ca_file })))
}

fn parse_mode(dialect: Dialect, key: &str, value: &str) -> anyhow::Result<Option<TlsVerify>> {
    let v = value.to_ascii_lowercase().replace('-', "_");
    let verify = match (dialect, v.as_str()) {
        (Dialect::Postgres, "disable") | (Dialect::MySql, "disabled" | "false" | "0") => None,
        (Dialect::Postgres, "require" | "verify_full")
        | (Dialect::MySql, "required" | "verify_identity" | "true" | "1") => Some(TlsVerify::Full),
        (Dialect::Postgres, "verify_ca") | (Dialect::MySql, "verify_ca") => Some(TlsVerify::Chain),
        (Dialect::Postgres, "allow" | "prefer") | (Dialect::MySql, "preferred") => bail!(
            "{key}={value} is not supported: it falls back to a connection without TLS; \
             use {} (no TLS) or {} (TLS, verified)",
            if dialect == Dialect::Postgres {
                "sslmode=disable"
            } else {
                "ssl-mode=DISABLED"
            },
            if dialect == Dialect::Postgres {
                "sslmode=verify-full"
            } else {
                "ssl-mode=VERIFY_IDENTITY"
            }
        ),
        _ => bail!(
            "{key}={value} is not a TLS mode: use {}",
            if dialect == Dialect::Postgres {
                "disable, require, verify-ca or verify-full"
            } else {
                "DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"
            }
        ),
    };
    Ok(verify)
}

/// The certificates in a PEM file; an error when there is none.
fn load_roots(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the CA file {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("the CA file {} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("the CA file {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The rustls client configuration for `settings`: ring, TLS 1.2 and 1.3, the CA file's
/// roots (or Mozilla's), the check `settings.verify` asks for.
fn client_config(settings: &TlsSettings) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in load_roots(path)? {
                roots
                    .add(cert)
                    .with_context(|| format!("a CA in {}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .context("the TLS verifier")?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    Ok(match settings.verify {
        TlsVerify::Full => builder.with_webpki_verifier(verifier),
        TlsVerify::Chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier))),
    }
    .with_no_client_auth())
}

/// `verify-ca`: the chain is checked as for `verify-full`, then a certificate that does
/// not name the host is accepted (rustls checks the name only after the chain).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether a connection failed because the server's certificate was refused (rustls's
/// `invalid peer certificate`, which the drivers pass on only as text): a setting to fix,
/// not a database to wait for.
pub fn is_certificate_refused(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("invalid peer certificate")
}

/// The mysql crate's TLS options for `settings` (its own rustls support). The Unix socket
/// it would otherwise switch to on a loopback host is not used: it bypasses TLS.
pub fn mysql_ssl_opts(settings: &TlsSettings) -> mysql::SslOpts {
    mysql::SslOpts::default()
        .with_root_cert_path(settings.ca_file.clone())
        .with_danger_skip_domain_validation(settings.verify == TlsVerify::Chain)
}

/// A TLS connector for the postgres crate, over tokio-rustls.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<ClientConfig>,
}

impl PgTls {
    /// The connector for `settings`.
    pub fn new(settings: &TlsSettings) -> anyhow::Result<PgTls> {
        Ok(PgTls {
            config: Arc::new(client_config(settings)?),
        })
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, Self::Error> {
        Ok(PgTlsConnect {
            name: ServerName::try_from(domain)?.to_owned(),
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.config)),
        })
    }
}

/// One connection's handshake.
pub struct PgTlsConnect {
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.connector
                .connect(self.name, stream)
                .await
                .map(|s| PgTlsStream(Box::new(s)))
        })
    }
}

/// A TLS stream to PostgreSQL.
pub struct PgTlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> TlsStream for PgTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S> AsyncRead for PgTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for PgTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(text: &str) -> anyhow::Result<(url::Url, Option<TlsSettings>)> {
        let url = url::Url::parse(text).unwrap();
        let dialect = if text.starts_with("postgres") {
            Dialect::Postgres
        } else {
            Dialect::MySql
        };
        take_tls(dialect, &url, Path::new("/"))
    }

    #[test]
    fn modes_parse_as_operators_write_them() {
        let (rest, tls) =
            take("postgres://u:pw@h/db?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(rest.as_str(), "postgres://u:pw@h/db?connect_timeout=3");
        assert_eq!(
            tls,
            Some(TlsSettings {
                verify: TlsVerify::Full,
                ca_file: None
            })
        );
        assert_eq!(
            take("postgres://h/db?sslmode=require")
                .unwrap()
                .1
                .unwrap()
                .verify,
            TlsVerify::Full
        );
        assert_eq!(
            take("postgres://h/db?sslmode=verify-ca")
                .unwrap()
                .1
                .unwrap()
                .verify,
            TlsVerify::Chain
        );
        assert_eq!(
            take("postgres://h/db?sslmode=disable").unwrap(),
            (url::Url::parse("postgres://h/db").unwrap(), None)
        );
        assert_eq!(take("postgres://h/db").unwrap().1, None);
        assert_eq!(
            take("mysql://h/db?ssl-mode=VERIFY_IDENTITY")
                .unwrap()
                .1
                .unwrap()
                .verify,
            TlsVerify::Full
        );
        assert_eq!(
            take("mysql://h/db?ssl_mode=required")
                .unwrap()
                .1
                .unwrap()
                .verify,
            TlsVerify::Full
        );
        assert_eq!(
            take("mysql://h/db?ssl-mode=VERIFY_CA")
                .unwrap()
                .1
                .unwrap()
                .verify,
            TlsVerify::Chain
        );
        assert_eq!(
            take("mysql://h/db?ssl=true").unwrap().1.unwrap().verify,
            TlsVerify::Full
        );
        assert_eq!(take("mysql://h/db?ssl-mode=DISABLED").unwrap().1, None);
        assert_eq!(
            take("postgres://h/db?sslmode=verify-full&sslrootcert=system")
                .unwrap()
                .1
                .unwrap()
                .ca_file,
            None
        );
    }

    #[test]
    fn urls_with_tls_parameters_never_show_the_password() {
        for text in [
            "postgres://scim:topsecret@db.example/scim?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "mysql://scim:topsecret@db.example/scim?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ca.pem",
            "mariadb://scim@db.example/scim?ssl_mode=REQUIRED&password=topsecret",
        ] {
            let url = super::super::DatabaseUrl::parse(text, Path::new("/")).unwrap();
            for shown in [url.to_string(), format!("{url:?}"), url.redacted()] {
                assert!(!shown.contains("topsecret"), "{shown}");
                assert!(shown.contains("ssl"), "{shown}");
            }
        }
    }

    #[test]
    fn unsafe_or_wrong_settings_are_clear_errors() {
        for (url, says) in [
            ("postgres://u:topsecret@h/db?sslmode=prefer", "falls back"),
            ("postgres://u:topsecret@h/db?sslmode=allow", "falls back"),
            ("mysql://u:topsecret@h/db?ssl-mode=PREFERRED", "falls back"),
            (
                "postgres://u:topsecret@h/db?sslmode=bogus",
                "not a TLS mode",
            ),
            (
                "mysql://u:topsecret@h/db?danger_accept_invalid_certs=true",
                "always verified",
            ),
            (
                "postgres://u:topsecret@h/db?sslrootcert=/etc/ca.pem",
                "no TLS",
            ),
            (
                "postgres://u:topsecret@h/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
                "/no/such/ca.pem",
            ),
            (
                "mysql://u:topsecret@h/db?ssl-mode=REQUIRED&ssl-ca=/no/such/ca.pem",
                "/no/such/ca.pem",
            ),
        ] {
            let e = format!("{:#}", take(url).unwrap_err());
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("topsecret"), "{url}: {e}");
        }
    }
}

/// Against a PostgreSQL and a MariaDB of the test's own with TLS on, and certificates the
/// test made: verified TLS connects (and the session is encrypted), a wrong CA or a host
/// the certificate does not name is refused with a clear error, and no error holds the
/// password.
#[cfg(test)]
mod against_servers {
    use super::super::test_support::{TestCertificates, TestMariaDb, TestPostgres};
    use super::super::{DatabaseUrl, Db};
    use super::*;

    fn connect(url: &str) -> anyhow::Result<Db> {
        Db::connect(&DatabaseUrl::parse(url, Path::new("/"))?)
    }

    /// `url` (on 127.0.0.1) with its host changed to `localhost`, the name the server's
    /// certificate holds, and `params` added.
    fn with(url: &str, host: &str, params: &str) -> String {
        format!(
            "{}?{params}",
            url.replace("@127.0.0.1:", &format!("@{host}:"))
        )
    }

    fn password_of(url: &str) -> String {
        url::Url::parse(url)
            .unwrap()
            .password()
            .unwrap()
            .to_string()
    }

    /// The checks on one database; `encrypted` tells whether a connection runs over TLS.
    fn checks(
        url: &str,
        certs: &TestCertificates,
        verify_full: &str,
        verify_ca: &str,
        ca_param: &str,
        encrypted: impl Fn(&mut Db) -> bool,
    ) {
        let secret = password_of(url);
        let ca = format!("{ca_param}={}", certs.ca_file().display());
        let other = format!("{ca_param}={}", certs.other_ca_file().display());
        let mut plain = connect(url).expect("without TLS, as before");
        assert!(!encrypted(&mut plain));

        let mut db = connect(&with(url, "localhost", &format!("{verify_full}&{ca}")))
            .expect("verified TLS connects");
        assert!(encrypted(&mut db), "the session is not encrypted");
        let mut db = connect(&with(url, "127.0.0.1", &format!("{verify_ca}&{ca}")))
            .expect("a chain check ignores the host name");
        assert!(encrypted(&mut db));

        for (url, says) in [
            (
                with(url, "localhost", &format!("{verify_full}&{other}")),
                "UnknownIssuer",
            ),
            (
                with(url, "127.0.0.1", &format!("{verify_full}&{ca}")),
                "not valid for name",
            ),
            // Without a CA file, Mozilla's public CAs: the test's CA is not one of them.
            (with(url, "localhost", verify_full), "UnknownIssuer"),
        ] {
            let e = format!("{:#}", connect(&url).err().expect("refused"));
            assert!(e.contains(says), "{e}");
            assert!(e.contains("certificate"), "{e}");
            assert!(!e.contains(&secret), "the password is in: {e}");
            eprintln!("refused as expected: {e}");
        }
    }

    #[test]
    fn verified_tls_connects_and_a_wrong_ca_is_refused() {
        let certs = TestCertificates::make().unwrap();

        let pg = TestPostgres::start_with_tls(&certs).unwrap();
        let url = pg.create_database("tls_checks").unwrap();
        checks(
            &url,
            &certs,
            "sslmode=verify-full",
            "sslmode=verify-ca",
            "sslrootcert",
            |db| {
                db.query_opt(
                    "SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .unwrap()
                .unwrap()
                .int(0)
                .unwrap()
                    == 1
            },
        );
        drop(pg);

        let maria = TestMariaDb::start_with_tls(&certs).unwrap();
        let url = maria.create_database("tls_checks").unwrap();
        checks(
            &url,
            &certs,
            "ssl-mode=VERIFY_IDENTITY",
            "ssl-mode=VERIFY_CA",
            "ssl-ca",
            |db| {
                let row = db
                    .query_opt("SHOW SESSION STATUS LIKE 'Ssl_cipher'", &[])
                    .unwrap()
                    .unwrap();
                !row.text(1).unwrap_or_default().is_empty()
            },
        );
    }
}
