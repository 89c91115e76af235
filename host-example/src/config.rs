//! The host's TOML configuration file. The `[scim]` table says where the server is and how
//! to authenticate; every other top-level key is the provisioning policy, handed to the
//! component as JSON (see the README for the format).
//!
//! ```toml
//! [scim]
//! base_url = "https://joomla.example/api/scim/v2"
//! token_env = "SCIM_TOKEN"   # the token is read from this variable, or from `token`
//! timeout_secs = 30
//!
//! [operations]
//! create = true
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::runtime::{ConnectorSettings, Credentials};

/// The `[scim]` table. Its `Debug` never shows the token or the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSection {
    /// The SCIM base URL.
    pub base_url: String,
    /// The bearer token, when it is kept in the file.
    #[serde(default)]
    pub token: Option<String>,
    /// The environment variable holding the bearer token; takes precedence over `token`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// HTTP basic user name, instead of a token.
    #[serde(default)]
    pub username: Option<String>,
    /// HTTP basic password, when it is kept in the file.
    #[serde(default)]
    pub password: Option<String>,
    /// The environment variable holding the basic password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Per-request timeout in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
    /// Allow plain `http://` to a host other than loopback even though credentials are set
    /// (they then cross the network in clear text). Off by default; `test-connection`
    /// warns while it is on.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// `"oauth2"` for OAuth 2.0 client credentials (see [`crate::oauth2`]); without it the
    /// keys above decide (a token, basic, or none).
    #[serde(default)]
    pub auth: Option<String>,
    /// OAuth 2.0: the token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    /// OAuth 2.0: the client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAuth 2.0: the client secret, when it is kept in the file.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// OAuth 2.0: the environment variable holding the client secret; wins over
    /// `client_secret`.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// OAuth 2.0: the scopes to ask for, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
    /// OAuth 2.0: the `audience` parameter.
    #[serde(default)]
    pub audience: Option<String>,
    /// OAuth 2.0: the `resource` parameter (RFC 8707).
    #[serde(default)]
    pub resource: Option<String>,
    /// OAuth 2.0: `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub client_auth: Option<String>,
}

impl std::fmt::Debug for ScimSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ScimSection")
            .field("base_url", &self.base_url)
            .field("token", &hidden(&self.token))
            .field("token_env", &self.token_env)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("password_env", &self.password_env)
            .field("timeout_secs", &self.timeout_secs)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("auth", &self.auth)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &hidden(&self.client_secret))
            .field("client_secret_env", &self.client_secret_env)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

/// Why sending `credentials` to `base_url` would expose them: plain `http://` to a host
/// other than loopback. `None` when the URL is `https://`, loopback, unparsable (the
/// component reports that), or there are no credentials.
pub fn insecure_http_reason(base_url: &str, credentials: &Credentials) -> Option<String> {
    if matches!(credentials, Credentials::None) {
        return None;
    }
    remote_plain_http_host(base_url).map(|host| {
        format!(
            "{base_url} uses plain http:// to {host}, so the credentials would cross the network unencrypted"
        )
    })
}

/// The host of a plain `http://` URL that is not loopback; `None` for `https://`,
/// loopback, or a URL that does not parse (the component reports that).
fn remote_plain_http_host(base_url: &str) -> Option<String> {
    let url = url::Url::parse(base_url).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (!loopback).then(|| url.host_str().unwrap_or_default().to_string())
}

fn default_timeout() -> u32 {
    30
}

/// The `[host]` table: the sample host's own settings, not the component's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    /// The store: an SQLite file (default `scim-provisioner.db`, beside the config file),
    /// or a `postgres://…` or `mysql://…` (`mariadb://…`) URL for a database many
    /// workers share.
    pub database: String,
    /// Requests a sync runs at once (default 8).
    pub concurrency: u32,
    /// The most deactivations and deletions a sync may send without `--allow-deletes`:
    /// a count (`"50"`) or a percentage of linked users (`"10%"`). Default `"10%"`.
    pub deprovision_threshold: String,
    /// Delivery attempts before an outbox event is parked (default 8).
    pub max_attempts: u32,
    /// Users a sync worker hands the component at once (default 100, at most 1000). Where
    /// the server supports `/Bulk`, their writes travel together, in requests the
    /// component cuts to the server's limits; 1 sends each user's writes on their own.
    pub batch_size: u32,
    /// The most linear memory one component instance may hold, in MiB (default 512, at
    /// least 16). See [`crate::GuestLimits`] for why 512.
    pub memory_limit_mb: u32,
    /// How long the guest may run without returning or calling the host, in seconds
    /// (default 10): a call past it traps with "deadline exceeded".
    pub call_deadline_secs: u32,
    /// Where the precompiled component is kept (relative paths from the config file's
    /// directory). Default: beside the `.wasm`. `SCIM_PROVISIONER_CACHE` wins over it.
    pub cache_dir: Option<String>,
    /// On a shared database, how long a worker's claim on outbox events lasts before
    /// another worker may take them (default 60 s): extended every third of it while a
    /// batch is delivered, and the longest a dead worker's events wait.
    pub claim_lease_secs: u32,
    /// The most requests in flight to the SCIM server's origin from every process on the
    /// shared database together (default 0: no such cap, each process sends up to
    /// `concurrency`). On SQLite, a cap for this process. See [`crate::shared_in_flight`].
    pub server_in_flight: u32,
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            database: "scim-provisioner.db".into(),
            concurrency: 8,
            deprovision_threshold: "10%".into(),
            max_attempts: 8,
            batch_size: 100,
            memory_limit_mb: crate::GuestLimits::DEFAULT_MEMORY_MB,
            call_deadline_secs: crate::GuestLimits::DEFAULT_DEADLINE_SECS,
            cache_dir: None,
            claim_lease_secs: 60,
            server_in_flight: 0,
        }
    }
}

/// A deprovisioning threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// At most this many.
    Count(u64),
    /// At most this percentage of linked users.
    Percent(f64),
}

impl Threshold {
    /// Parses `"50"` or `"10%"`.
    pub fn parse(s: &str) -> anyhow::Result<Threshold> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .context("deprovision_threshold: not a percentage")?;
            if !(0.0..=100.0).contains(&p) {
                bail!("deprovision_threshold must be between 0% and 100%");
            }
            Ok(Threshold::Percent(p))
        } else {
            Ok(Threshold::Count(
                s.parse().context("deprovision_threshold: not a count")?,
            ))
        }
    }

    /// The most deprovisions allowed among `linked` users.
    pub fn limit(&self, linked: u64) -> u64 {
        match self {
            Threshold::Count(n) => *n,
            // Rounded up, so a small site still allows one deprovision at any non-zero %.
            Threshold::Percent(p) => ((linked as f64) * p / 100.0).ceil() as u64,
        }
    }
}

/// A parsed configuration file.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where the SCIM server is.
    pub scim: ScimSection,
    /// The host's own settings.
    pub host: HostSection,
    /// The policy as JSON.
    pub policy_json: String,
}

impl HostConfig {
    /// Reads and parses a file (the `cli` feature: toml).
    #[cfg(feature = "cli")]
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses TOML text (the `cli` feature: toml).
    #[cfg(feature = "cli")]
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(text).context("not valid TOML")?;
        let scim = table
            .remove("scim")
            .context("the [scim] table is missing")?;
        let scim: ScimSection = scim.try_into().context("in [scim]")?;
        let host: HostSection = match table.remove("host") {
            Some(h) => h.try_into().context("in [host]")?,
            None => HostSection::default(),
        };
        Threshold::parse(&host.deprovision_threshold)?;
        if host.concurrency == 0 || host.concurrency > 64 {
            bail!("[host] concurrency must be between 1 and 64");
        }
        if host.server_in_flight > 1024 {
            bail!("[host] server_in_flight must be between 0 (no cap) and 1024");
        }
        if host.batch_size == 0 || host.batch_size > 1000 {
            bail!("[host] batch_size must be between 1 and 1000");
        }
        if !(16..=4096).contains(&host.memory_limit_mb) {
            bail!("[host] memory_limit_mb must be between 16 and 4096");
        }
        if host.call_deadline_secs == 0 || host.call_deadline_secs > 3600 {
            bail!("[host] call_deadline_secs must be between 1 and 3600");
        }
        let policy_json = if table.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&table).context("converting the policy to JSON")?
        };
        Ok(HostConfig {
            scim,
            host,
            policy_json,
        })
    }

    /// What `test-connection` should warn about in these settings: credentials over plain
    /// `http://` that `allow_insecure_http` let through.
    pub fn warnings(&self, settings: &ConnectorSettings) -> Vec<String> {
        insecure_http_reason(&settings.base_url, &settings.credentials)
            .map(|reason| {
                format!(
                    "{reason} (allowed by `allow_insecure_http = true`); use https:// where you can"
                )
            })
            .into_iter()
            .collect()
    }

    /// The guest limits `[host]` sets.
    pub fn limits(&self) -> crate::GuestLimits {
        crate::GuestLimits {
            memory_limit_bytes: (self.host.memory_limit_mb as usize) << 20,
            call_deadline: std::time::Duration::from_secs(u64::from(self.host.call_deadline_secs)),
        }
    }

    /// `[host] cache_dir`, a relative path taken from `config_dir` (the config file's).
    pub fn cache_dir(&self, config_dir: &Path) -> Option<PathBuf> {
        self.host
            .cache_dir
            .as_deref()
            .map(|dir| config_dir.join(dir))
    }

    /// The settings a session opens with, with secrets resolved from the environment.
    /// Credentials over plain `http://` to anything but loopback are refused unless
    /// `[scim] allow_insecure_http = true`.
    pub fn settings(&self) -> anyhow::Result<ConnectorSettings> {
        let s = &self.scim;
        let from_env = |name: &Option<String>| -> anyhow::Result<Option<String>> {
            match name {
                Some(var) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Ok(Some(v)),
                    _ => bail!("environment variable {var} is not set"),
                },
                None => Ok(None),
            }
        };
        if crate::oauth2::wanted(s)? {
            let policy_json = self.policy_with_insecure_http()?;
            let (credentials, policy_json) = crate::oauth2::settings(s, &policy_json, |var| {
                from_env(&Some(var.to_string()))?
                    .with_context(|| format!("environment variable {var} is not set"))
            })?;
            if !s.allow_insecure_http
                && let Some(host) = remote_plain_http_host(&s.base_url)
            {
                bail!(
                    "refusing plain http:// to {host}: the access token and users' data would \
                     cross the network unencrypted. Use https://, or set \
                     `allow_insecure_http = true` in [scim] if the network is trusted"
                );
            }
            return Ok(ConnectorSettings {
                base_url: s.base_url.clone(),
                credentials,
                timeout_ms: s.timeout_secs.saturating_mul(1000),
                policy_json,
            });
        }
        let credentials = if let Some(username) = &s.username {
            let password = from_env(&s.password_env)?
                .or_else(|| s.password.clone())
                .context("basic auth needs `password` or `password_env`")?;
            Credentials::Basic {
                username: username.clone(),
                password,
            }
        } else if let Some(token) = from_env(&s.token_env)?.or_else(|| s.token.clone()) {
            Credentials::Bearer(token)
        } else {
            Credentials::None
        };
        if !s.allow_insecure_http
            && let Some(reason) = insecure_http_reason(&s.base_url, &credentials)
        {
            bail!(
                "refusing to send credentials in clear text: {reason}. Use https://, or set \
                 `allow_insecure_http = true` in [scim] if the network is trusted"
            );
        }
        if !s.allow_insecure_http
            && let Some(host) = remote_plain_http_host(&s.base_url)
        {
            bail!(
                "refusing plain http:// to {host}: users' data would cross the network \
                 unencrypted. Use https://, or set `allow_insecure_http = true` in [scim] if \
                 the network is trusted"
            );
        }
        Ok(ConnectorSettings {
            base_url: s.base_url.clone(),
            credentials,
            timeout_ms: s.timeout_secs.saturating_mul(1000),
            policy_json: self.policy_with_insecure_http()?,
        })
    }

    /// The policy JSON, with `allow_insecure_http` carried into it when `[scim]` sets it:
    /// the component checks the base URL against the same rule (issue 28), and the policy
    /// is the one channel the frozen WIT gives it.
    fn policy_with_insecure_http(&self) -> anyhow::Result<String> {
        if !self.scim.allow_insecure_http {
            return Ok(self.policy_json.clone());
        }
        let mut policy: serde_json::Map<String, serde_json::Value> =
            if self.policy_json.trim().is_empty() {
                serde_json::Map::new()
            } else {
                serde_json::from_str(&self.policy_json).context("reading the policy")?
            };
        policy.insert("allow_insecure_http".into(), serde_json::Value::Bool(true));
        Ok(serde_json::Value::Object(policy).to_string())
    }
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use super::*;

    #[test]
    fn splits_connection_from_policy() {
        let c = HostConfig::parse(
            r#"
            [scim]
            base_url = "https://x.example/scim/v2"
            token = "t0ken"
            [operations]
            delete = false
            [[mapping]]
            target = "userName"
            source = "name"
            "#,
        )
        .unwrap();
        let policy: serde_json::Value = serde_json::from_str(&c.policy_json).unwrap();
        assert_eq!(policy["operations"]["delete"], false);
        assert_eq!(policy["mapping"][0]["target"], "userName");
        let settings = c.settings().unwrap();
        assert!(matches!(settings.credentials, Credentials::Bearer(ref t) if t == "t0ken"));
        assert_eq!(settings.timeout_ms, 30_000);
        assert!(!format!("{settings:?}").contains("t0ken"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = HostConfig::parse(
            "[scim]\nbase_url = \"https://x.example\"\ntoken = \"s3cr3t-t0ken\"\nusername = \"u\"\npassword = \"pa55w0rd-x\"",
        )
        .unwrap();
        let debug = format!("{c:?} {:?} {c:#?}", c.scim);
        assert!(!debug.contains("s3cr3t-t0ken"), "{debug}");
        assert!(!debug.contains("pa55w0rd-x"), "{debug}");
        assert!(debug.contains("x.example"));
        let settings = c.settings().unwrap();
        let debug = format!("{settings:?} {settings:#?}");
        assert!(!debug.contains("pa55w0rd-x"), "{debug}");
    }

    #[test]
    fn plain_http_with_credentials_needs_consent() {
        let conf = |url: &str, auth: &str, allow: bool| {
            HostConfig::parse(&format!(
                "[scim]\nbase_url = \"{url}\"\n{auth}\nallow_insecure_http = {allow}"
            ))
            .unwrap()
        };
        let token = "token = \"t0ken-abc\"";
        let basic = "username = \"u\"\npassword = \"pw-abcdef\"";
        let err = conf("http://scim.example/v2", token, false)
            .settings()
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_insecure_http"), "{err}");
        assert!(!err.contains("t0ken-abc"), "{err}");
        assert!(
            conf("http://10.0.0.5:8080/v2", basic, false)
                .settings()
                .is_err()
        );
        // Consent, TLS, loopback or no credentials: allowed.
        assert!(
            conf("http://scim.example/v2", token, true)
                .settings()
                .is_ok()
        );
        assert!(
            conf("https://scim.example/v2", token, false)
                .settings()
                .is_ok()
        );
        for url in [
            "http://127.0.0.1:8080/v2",
            "http://localhost/v2",
            "http://[::1]:9/v2",
        ] {
            assert!(conf(url, token, false).settings().is_ok(), "{url}");
        }
        // Users' data is refused over plain http:// too, credentials or not (issue 28).
        let err = conf("http://scim.example/v2", "", false)
            .settings()
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_insecure_http"), "{err}");
        let allowed = conf("http://scim.example/v2", "", true).settings().unwrap();
        let policy: serde_json::Value = serde_json::from_str(&allowed.policy_json).unwrap();
        assert_eq!(
            policy["allow_insecure_http"], true,
            "carried to the component"
        );
        // test-connection warns when consent let it through, and only then.
        let c = conf("http://scim.example/v2", token, true);
        let warnings = c.warnings(&c.settings().unwrap());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("plain http://"), "{warnings:?}");
        let c = conf("https://scim.example/v2", token, false);
        assert!(c.warnings(&c.settings().unwrap()).is_empty());
    }

    #[test]
    fn guest_limits_from_host_table() {
        let c = HostConfig::parse("[scim]\nbase_url = \"https://x\"").unwrap();
        assert_eq!(c.limits().memory_limit_bytes, 512 << 20);
        let c = HostConfig::parse(
            "[scim]\nbase_url = \"https://x\"\n[host]\nmemory_limit_mb = 64\ncall_deadline_secs = 3",
        )
        .unwrap();
        assert_eq!(c.limits().memory_limit_bytes, 64 << 20);
        assert_eq!(c.limits().call_deadline, std::time::Duration::from_secs(3));
        assert!(
            HostConfig::parse("[scim]\nbase_url = \"https://x\"\n[host]\nmemory_limit_mb = 1")
                .is_err()
        );
    }

    #[test]
    fn cache_dir_from_host_table() {
        let c = HostConfig::parse("[scim]\nbase_url = \"https://x\"").unwrap();
        assert_eq!(c.cache_dir(Path::new("/etc/scim")), None);
        let c =
            HostConfig::parse("[scim]\nbase_url = \"https://x\"\n[host]\ncache_dir = \"cache\"")
                .unwrap();
        assert_eq!(
            c.cache_dir(Path::new("/etc/scim")),
            Some(PathBuf::from("/etc/scim/cache"))
        );
        let c = HostConfig::parse(
            "[scim]\nbase_url = \"https://x\"\n[host]\ncache_dir = \"/var/cache/scim\"",
        )
        .unwrap();
        assert_eq!(
            c.cache_dir(Path::new("/etc/scim")),
            Some(PathBuf::from("/var/cache/scim"))
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(Threshold::parse("10%").unwrap().limit(1000), 100);
        assert_eq!(Threshold::parse(" 5 ").unwrap().limit(1000), 5);
        assert!(Threshold::parse("150%").is_err());
        assert!(Threshold::parse("many").is_err());
        let c = HostConfig::parse(
            "[scim]\nbase_url = \"https://x\"\n[host]\nconcurrency = 2\ndeprovision_threshold = \"3\"",
        )
        .unwrap();
        assert_eq!(c.host.concurrency, 2);
        assert!(c.policy_json.is_empty(), "[host] is not policy");
    }

    #[test]
    fn reports_missing_pieces() {
        assert!(HostConfig::parse("[operations]\ncreate = true").is_err());
        assert!(HostConfig::parse("[scim]\nbase_url = 1").is_err());
        let c = HostConfig::parse(
            "[scim]\nbase_url = \"https://x\"\ntoken_env = \"SCIM_PROVISIONER_TEST_UNSET_VAR\"",
        )
        .unwrap();
        assert!(c.settings().is_err());
    }
}
