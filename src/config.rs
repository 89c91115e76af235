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
}

// Hand-written so that a token or password can never reach a log line through `{:?}`.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::None => f.write_str("None"),
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
            Auth::None => None,
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
    /// Validates the pieces and normalises the base URL.
    pub fn new(base_url: &str, auth: Auth, timeout_ms: u32) -> Result<Self, ProvisioningError> {
        let base_url = validate_base_url(base_url)?;
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
fn base64_encode(input: &[u8]) -> String {
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
