//! Connector configuration: where the SCIM server is and how to authenticate, validated
//! before any request is made. Secrets are kept out of `Debug` output.

use std::fmt;

use crate::error::ProvisioningError;

/// How the connector authenticates.
#[derive(Clone, PartialEq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// No authentication.
    None,
    /// OAuth 2.0 client credentials: a token from the token endpoint, sent as a bearer token
    /// (built from `basic` and the policy's `oauth2` section; see `client::oauth2`).
    OAuth2(crate::client::oauth2::ClientCredentials),
}

// Hand-written so that a token or password can never reach a log line through `{:?}`.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::None => f.write_str("None"),
            Auth::OAuth2(c) => write!(f, "OAuth2({c:?})"),
        }
    }
}

impl Auth {
    /// The strings that must never leave the connector: the token or password, and the
    /// encoded header value.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Auth::Bearer(token) => out.push(token.clone()),
            Auth::Basic { password, .. } => out.push(password.clone()),
            Auth::None => {}
            Auth::OAuth2(c) => out.extend(c.secrets()),
        }
        if let Some(header) = self.header_value()
            && let Some((_, encoded)) = header.split_once(' ')
        {
            out.push(encoded.to_string());
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// The `Authorization` header value, if any.
    pub fn header_value(&self) -> Option<String> {
        match self {
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64_encode(format!("{username}:{password}").as_bytes())
            )),
            // The transport asks the token endpoint (see `client::oauth2`).
            Auth::None | Auth::OAuth2(_) => None,
        }
    }
}

/// The largest timeout a connector accepts: ten minutes.
pub const MAX_TIMEOUT_MS: u32 = 600_000;

/// A validated connector configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// The base URL, without a trailing slash.
    pub base_url: String,
    /// Authentication.
    pub auth: Auth,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u32,
}

impl ConnectorConfig {
    /// Validates the pieces and normalises the base URL. Plain `http://` is accepted to
    /// loopback only (see [`ConnectorConfig::with_insecure_http`]).
    pub fn new(base_url: &str, auth: Auth, timeout_ms: u32) -> Result<Self, ProvisioningError> {
        Self::with_insecure_http(base_url, auth, timeout_ms, false)
    }

    /// [`ConnectorConfig::new`], with plain `http://` to hosts other than loopback accepted
    /// when `allow_insecure_http` is set (the policy's `allow_insecure_http`). Without it,
    /// such a URL is `invalid-config`: users' data and the credentials would cross the
    /// network unencrypted.
    pub fn with_insecure_http(
        base_url: &str,
        auth: Auth,
        timeout_ms: u32,
        allow_insecure_http: bool,
    ) -> Result<Self, ProvisioningError> {
        let base_url = validate_base_url(base_url)?;
        if !allow_insecure_http && let Some(host) = remote_plain_http_host(&base_url) {
            return Err(invalid(format!(
                "refusing plain http:// to {host}: users' data and credentials would cross \
                 the network unencrypted. Use https://, or set `allow_insecure_http` to true \
                 in the policy if the network is trusted (http:// to loopback is always allowed)"
            )));
        }
        validate_auth(&auth)?;
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ProvisioningError::InvalidConfig(format!(
                "timeout must be between 1 and {MAX_TIMEOUT_MS} ms, got {timeout_ms}"
            )));
        }
        Ok(ConnectorConfig {
            base_url,
            auth,
            timeout_ms,
        })
    }
}

fn invalid(msg: impl Into<String>) -> ProvisioningError {
    ProvisioningError::InvalidConfig(msg.into())
}

/// Checks that the base URL is an absolute http(s) URL with a host and no query, fragment
/// or embedded credentials, and strips trailing slashes so paths can be appended.
fn validate_base_url(raw: &str) -> Result<String, ProvisioningError> {
    let url = raw.trim();
    if url.is_empty() {
        return Err(invalid("base URL is empty"));
    }
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        r
    } else {
        return Err(invalid(format!(
            "base URL must start with http:// or https://: {url}"
        )));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "base URL contains whitespace or control characters",
        ));
    }
    if url.contains('?') || url.contains('#') {
        return Err(invalid("base URL must not have a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid(format!("base URL has no host: {url}")));
    }
    // Credentials in the URL would end up in logs and error messages.
    if authority.contains('@') {
        return Err(invalid(
            "base URL must not embed credentials; configure them as auth",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The host of a plain `http://` base URL (already validated) when it is not loopback:
/// `localhost`, `127.0.0.0/8` or `[::1]`. `None` for `https://` and loopback.
pub(crate) fn remote_plain_http_host(base_url: &str) -> Option<String> {
    let rest = base_url.strip_prefix("http://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let loopback = host == "localhost"
        || host == "::1"
        || host == "0:0:0:0:0:0:0:1"
        || is_ipv4_loopback(&host);
    (!loopback).then_some(host)
}

/// `127.x.y.z` as four decimal octets.
fn is_ipv4_loopback(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.parse::<u8>().is_ok())
}

/// The policy's `allow_insecure_http` (false when absent or the policy is empty), read
/// before the connector opens, since the base URL is checked first. The rest of the policy
/// is checked by [`crate::policy::Policy::parse`].
pub fn insecure_http_allowed(policy_json: &str) -> Result<bool, ProvisioningError> {
    if policy_json.trim().is_empty() {
        return Ok(false);
    }
    let value: serde_json::Value = serde_json::from_str(policy_json)
        .map_err(|e| invalid(format!("policy is not JSON: {e}")))?;
    match value.get("allow_insecure_http") {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(
            "policy: `allow_insecure_http` must be true or false",
        )),
    }
}

/// Rejects credentials that would corrupt the HTTP header they travel in.
fn validate_auth(auth: &Auth) -> Result<(), ProvisioningError> {
    let bad = |s: &str| s.chars().any(|c| c.is_control());
    match auth {
        Auth::Bearer(token) if token.trim().is_empty() => Err(invalid("bearer token is empty")),
        Auth::Bearer(token) if bad(token) => {
            Err(invalid("bearer token contains control characters"))
        }
        Auth::Basic { username, .. } if username.is_empty() => {
            Err(invalid("basic auth user name is empty"))
        }
        Auth::Basic { username, password } if bad(username) || bad(password) => {
            Err(invalid("basic auth credentials contain control characters"))
        }
        Auth::Basic { username, .. } if username.contains(':') => {
            Err(invalid("basic auth user name must not contain ':'"))
        }
        _ => Ok(()),
    }
}

/// Standard base64 with padding (RFC 4648 §4), for HTTP basic auth.
pub(crate) fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*s as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer() -> Auth {
        Auth::Bearer("s3cret".into())
    }

    #[test]
    fn normalises_trailing_slashes() {
        let c = ConnectorConfig::new(" https://x.example/scim/v2// ", bearer(), 1000).unwrap();
        assert_eq!(c.base_url, "https://x.example/scim/v2");
    }

    #[test]
    fn rejects_bad_base_urls() {
        for url in [
            "",
            "ftp://x",
            "x.example/scim",
            "https://",
            "https:///v2",
            "https://u:p@x.example/v2",
            "https://x.example/v2?a=b",
            "https://x.example/v2#f",
            "https://x.exa mple/v2",
        ] {
            let err = ConnectorConfig::new(url, bearer(), 1000).unwrap_err();
            assert!(
                matches!(err, ProvisioningError::InvalidConfig(_)),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_credentials_and_timeouts() {
        let cases = [
            (Auth::Bearer("  ".into()), 1000),
            (Auth::Bearer("a\r\nX-Evil: 1".into()), 1000),
            (
                Auth::Basic {
                    username: String::new(),
                    password: "p".into(),
                },
                1000,
            ),
            (
                Auth::Basic {
                    username: "a:b".into(),
                    password: "p".into(),
                },
                1000,
            ),
            (bearer(), 0),
            (bearer(), MAX_TIMEOUT_MS + 1),
        ];
        for (auth, timeout) in cases {
            assert!(ConnectorConfig::new("https://x.example", auth, timeout).is_err());
        }
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let err = ConnectorConfig::new("https://x.example", Auth::Bearer("a\nsecret".into()), 1)
            .unwrap_err();
        assert!(!err.to_string().contains("secret"));
        let c = ConnectorConfig::new("https://x.example", bearer(), 1).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    /// Issue 28, finding 7: plain http:// to a host other than loopback is refused unless
    /// the policy sets `allow_insecure_http`; loopback and https:// always pass.
    #[test]
    fn plain_http_to_a_remote_host_needs_allow_insecure_http() {
        for url in [
            "http://scim.example/v2",
            "http://192.0.2.1:8080/v2",
            "http://[2001:db8::1]/v2",
            "http://localhost.example.com/v2",
            "http://127.0.0.1.example/v2",
        ] {
            let err = ConnectorConfig::new(url, bearer(), 1000).unwrap_err();
            assert!(
                matches!(&err, ProvisioningError::InvalidConfig(m) if m.contains("allow_insecure_http")),
                "{url}: {err:?}"
            );
            assert!(!err.to_string().contains("s3cret"), "{err}");
            let allowed = ConnectorConfig::with_insecure_http(url, bearer(), 1000, true);
            assert!(
                allowed.is_ok(),
                "{url} with allow_insecure_http: {allowed:?}"
            );
        }
        for url in [
            "http://127.0.0.1:8080/v2",
            "http://127.8.9.10/v2",
            "http://localhost:9/v2",
            "http://LOCALHOST/v2",
            "http://[::1]:8080/v2",
            "https://scim.example/v2",
        ] {
            assert!(ConnectorConfig::new(url, bearer(), 1000).is_ok(), "{url}");
        }
        assert_eq!(
            insecure_http_allowed(r#"{"allow_insecure_http": true}"#).ok(),
            Some(true)
        );
        assert_eq!(insecure_http_allowed("").ok(), Some(false));
        assert_eq!(insecure_http_allowed("{}").ok(), Some(false));
        assert!(insecure_http_allowed(r#"{"allow_insecure_http": "yes"}"#).is_err());
    }

    #[test]
    fn basic_auth_header_is_rfc4648_base64() {
        let auth = Auth::Basic {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(
            auth.header_value().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b""), "");
    }
}
