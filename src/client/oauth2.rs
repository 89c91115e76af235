//! OAuth 2.0 client credentials (RFC 6749 §4.4) for SCIM servers that accept only access
//! tokens.
//!
//! The frozen WIT 0.1.0 has no `oauth2` case in `auth`, so the settings travel in what it
//! has: the policy JSON's `oauth2` section names the token endpoint (and scope, audience,
//! resource, client authentication), and `auth: basic(client-id, client-secret)` carries the
//! client's credentials. When the policy names a token endpoint, those credentials are sent
//! to the token endpoint only, never to the SCIM server; SCIM requests carry
//! `Authorization: Bearer <access token>`.
//!
//! The token exchange goes through the same `HttpPort` as every SCIM request, so each host
//! gets it without code of its own (the host only allows the token URL's origin). The token
//! is kept until shortly before it expires; a 401 from the SCIM server drops it, and the
//! transport fetches a new one and retries the request once. Neither the client secret nor
//! an access token appears in a log line, an error or `{:?}`.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::config::{Auth, base64_encode, remote_plain_http_host};
use crate::error::{ProvisioningError, RetryClass, ScimError, TransportError};
use crate::ports::{HttpPort, HttpRequest, HttpResponse, LogLevel, LogPort, Method};
use crate::scim::uri::encode_component;

use super::response;

/// How long a token without `expires_in` is used before a new one is fetched. RFC 6749
/// §5.1 leaves the lifetime to the server's documentation when it is omitted; five minutes
/// keeps the token endpoint's load small, and a 401 fetches a new token sooner anyway.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The most a token's lifetime is shortened by, so a request never leaves with a token about
/// to expire in flight. Short lifetimes lose a tenth instead (a 3 s token is renewed after
/// 2.7 s).
pub const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The longest a token is kept, whatever `expires_in` says: a server's absurd lifetime (or
/// `u64::MAX`) must not overflow the clock, and a day-old token is worth asking again for.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded id and secret (the RFC's default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// The policy's `oauth2` section: where and how to ask for tokens. Nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Settings {
    /// The token endpoint (`https://idp.example/oauth2/token`).
    pub token_url: String,
    /// The `scope` parameter, space-separated scopes; none to let the server choose.
    #[serde(default)]
    pub scope: Option<String>,
    /// The `audience` parameter (Auth0, Okta and others name the API with it).
    #[serde(default)]
    pub audience: Option<String>,
    /// The `resource` parameter (RFC 8707 resource indicators).
    #[serde(default)]
    pub resource: Option<String>,
    /// How the client authenticates to the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

impl OAuth2Settings {
    /// The policy's `oauth2` section, validated; `None` when the policy has none.
    pub fn from_policy(
        policy_json: &str,
        allow_insecure_http: bool,
    ) -> Result<Option<OAuth2Settings>, ProvisioningError> {
        if policy_json.trim().is_empty() {
            return Ok(None);
        }
        let value: Value = serde_json::from_str(policy_json)
            .map_err(|e| invalid(format!("policy is not JSON: {e}")))?;
        let section = match value.get("oauth2") {
            None | Some(Value::Null) => return Ok(None),
            Some(section) => section.clone(),
        };
        let settings: OAuth2Settings = serde_json::from_value(section)
            .map_err(|e| invalid(format!("policy: `oauth2`: {e}")))?;
        settings.validate(allow_insecure_http)?;
        Ok(Some(settings))
    }

    fn validate(&self, allow_insecure_http: bool) -> Result<(), ProvisioningError> {
        let url = self.token_url.trim();
        if url.is_empty() {
            return Err(invalid("policy: `oauth2.token_url` is empty"));
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                invalid(format!(
                    "policy: `oauth2.token_url` must start with https:// or http://: {url}"
                ))
            })?;
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "policy: `oauth2.token_url` contains whitespace or control characters",
            ));
        }
        if url.contains('#') {
            return Err(invalid(
                "policy: `oauth2.token_url` must not have a fragment",
            ));
        }
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(invalid(format!(
                "policy: `oauth2.token_url` has no host: {url}"
            )));
        }
        if authority.contains('@') {
            return Err(invalid(
                "policy: `oauth2.token_url` must not embed credentials; the client id and \
                 secret travel as the connector's basic credentials",
            ));
        }
        if !allow_insecure_http
            && let Some(host) = remote_plain_http_host(url.split('?').next().unwrap_or(url))
        {
            return Err(invalid(format!(
                "policy: refusing plain http:// to the token endpoint on {host}: the client \
                 secret would cross the network unencrypted. Use https://, or set \
                 `allow_insecure_http` to true if the network is trusted"
            )));
        }
        for (name, value) in [
            ("scope", &self.scope),
            ("audience", &self.audience),
            ("resource", &self.resource),
        ] {
            if let Some(v) = value
                && (v.trim().is_empty() || v.chars().any(char::is_control))
            {
                return Err(invalid(format!(
                    "policy: `oauth2.{name}` must be a non-empty string without control \
                     characters (leave it out to send none)"
                )));
            }
        }
        Ok(())
    }
}

/// Applies the policy's `oauth2` section to the connector's credentials: with a token
/// endpoint, `basic(client-id, client-secret)` becomes [`Auth::OAuth2`]; without one, `auth`
/// is returned as it came. An `oauth2` section with a bearer token or no credentials is
/// `invalid-config`: client credentials need the client's id and secret.
pub fn auth_for_policy(
    auth: Auth,
    policy_json: &str,
    allow_insecure_http: bool,
) -> Result<Auth, ProvisioningError> {
    let Some(settings) = OAuth2Settings::from_policy(policy_json, allow_insecure_http)? else {
        return Ok(auth);
    };
    match auth {
        Auth::Basic { username, password } => {
            if password.is_empty() {
                return Err(invalid(
                    "OAuth 2.0 client credentials: the client secret (basic password) is empty",
                ));
            }
            Ok(Auth::OAuth2(ClientCredentials::new(
                settings, username, password,
            )))
        }
        Auth::OAuth2(c) => Ok(Auth::OAuth2(c)),
        Auth::Bearer(_) | Auth::None => Err(invalid(
            "the policy's `oauth2` section needs the client id and secret as the connector's \
             basic credentials (auth: basic(client-id, client-secret)), not a bearer token or \
             no credentials",
        )),
    }
}

/// An access token and when to stop using it.
struct CachedToken {
    access_token: String,
    renew_at: Duration,
}

/// The monotonic time since the first call, the default clock.
fn monotonic_now() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The client credentials grant for one connector: settings, the client's id and secret, and
/// the cached token (shared by clones, so every transport of a connector uses one token).
#[derive(Clone)]
pub struct ClientCredentials {
    settings: OAuth2Settings,
    client_id: String,
    client_secret: String,
    cache: Arc<Mutex<Option<CachedToken>>>,
    clock: fn() -> Duration,
}

// Hand-written so neither the secret nor a token can reach a log line through `{:?}`.
impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.settings.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("client_auth", &self.settings.client_auth)
            .finish_non_exhaustive()
    }
}

// Two connectors are configured alike when their settings and credentials are; the cache
// is state, not configuration.
impl PartialEq for ClientCredentials {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
            && self.client_id == other.client_id
            && self.client_secret == other.client_secret
    }
}

/// A token the transport may send, and how many requests getting it took (0 or 1).
pub struct Token {
    /// The access token.
    pub access_token: String,
    /// Requests made to the token endpoint for it.
    pub requests: u32,
}

impl ClientCredentials {
    /// Client credentials for these settings.
    pub fn new(settings: OAuth2Settings, client_id: String, client_secret: String) -> Self {
        ClientCredentials {
            settings,
            client_id,
            client_secret,
            cache: Arc::new(Mutex::new(None)),
            clock: monotonic_now,
        }
    }

    /// The same credentials, timed by `clock` (for tests of expiry).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: fn() -> Duration) -> Self {
        self.clock = clock;
        self
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &str {
        self.settings.token_url.trim()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<CachedToken>> {
        // A poisoned lock only means a panic elsewhere held it; the token is still whole.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The strings that must never leave the connector: the secret, the encoded basic
    /// credentials, and the current access token.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = vec![self.client_secret.clone(), self.basic_credentials()];
        if let Some(token) = self.cache().as_ref() {
            out.push(token.access_token.clone());
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// Forgets the token the SCIM server just refused, so the next request fetches a new
    /// one. A token fetched since (by another transport) is kept.
    pub fn invalidate(&self, refused: &str) {
        let mut cache = self.cache();
        if cache.as_ref().is_some_and(|t| t.access_token == refused) {
            *cache = None;
        }
    }

    /// The cached token while it is fresh, else a new one from the token endpoint.
    pub fn access_token<H: HttpPort, L: LogPort>(
        &self,
        http: &H,
        log: &L,
        timeout_ms: u32,
    ) -> Result<Token, ProvisioningError> {
        let now = (self.clock)();
        if let Some(token) = self.cache().as_ref()
            && now < token.renew_at
        {
            return Ok(Token {
                access_token: token.access_token.clone(),
                requests: 0,
            });
        }
        let (access_token, lifetime) = self.fetch(http, log, timeout_ms)?;
        let lifetime = lifetime.min(MAX_LIFETIME);
        let margin = (lifetime / 10).min(MAX_EXPIRY_MARGIN);
        let now = (self.clock)();
        *self.cache() = Some(CachedToken {
            access_token: access_token.clone(),
            renew_at: now
                .checked_add(lifetime.saturating_sub(margin))
                .unwrap_or(now),
        });
        Ok(Token {
            access_token,
            requests: 1,
        })
    }

    /// `base64(form(id) ":" form(secret))`, as RFC 6749 §2.3.1 asks.
    fn basic_credentials(&self) -> String {
        base64_encode(
            format!(
                "{}:{}",
                encode_component(&self.client_id),
                encode_component(&self.client_secret)
            )
            .as_bytes(),
        )
    }

    /// The token request (RFC 6749 §4.4.2).
    fn request(&self, timeout_ms: u32) -> HttpRequest {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.settings.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &self.settings.audience {
            form.push(("audience", audience));
        }
        if let Some(resource) = &self.settings.resource {
            form.push(("resource", resource));
        }
        let mut headers = vec![
            ("Accept".to_string(), "application/json".to_string()),
            (
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        match self.settings.client_auth {
            ClientAuth::ClientSecretBasic => headers.push((
                "Authorization".to_string(),
                format!("Basic {}", self.basic_credentials()),
            )),
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", &self.client_secret));
            }
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_component(v)))
            .collect::<Vec<_>>()
            .join("&");
        HttpRequest {
            method: Method::Post,
            url: self.token_url().to_string(),
            headers,
            body: Some(body.into_bytes()),
            timeout_ms,
        }
    }

    /// Asks the token endpoint for a token: the token and how long it may be used.
    fn fetch<H: HttpPort, L: LogPort>(
        &self,
        http: &H,
        log: &L,
        timeout_ms: u32,
    ) -> Result<(String, Duration), ProvisioningError> {
        let url = self.token_url();
        let result = http.send(self.request(timeout_ms));
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let e = self.transport_context(e);
                log.log(
                    LogLevel::Warn,
                    &format!("POST {url} (OAuth 2.0 token) failed: {e}"),
                );
                return Err(ProvisioningError::Transport(e));
            }
        };
        let read = self.read_answer(&response);
        match &read {
            Ok((_, lifetime)) => log.log(
                LogLevel::Debug,
                &format!(
                    "POST {url} -> {} (OAuth 2.0 token for {} s)",
                    response.status,
                    lifetime.as_secs()
                ),
            ),
            Err(e) => log.log(
                LogLevel::Warn,
                &format!("POST {url} -> {}: {e}", response.status),
            ),
        }
        read
    }

    /// A transport failure at the token endpoint says so, since the host's message names
    /// only what failed.
    fn transport_context(&self, e: TransportError) -> TransportError {
        let at = format!("OAuth 2.0 token endpoint {}", self.token_url());
        let scrub = |m: String| self.scrub(&m);
        match e {
            TransportError::Denied(m) => TransportError::Denied(format!(
                "{at}: {} (the host must allow the token URL's origin)",
                scrub(m)
            )),
            TransportError::InvalidUrl(m) => {
                TransportError::InvalidUrl(format!("{at}: {}", scrub(m)))
            }
            TransportError::CannotConnect(m) => {
                TransportError::CannotConnect(format!("{at}: {}", scrub(m)))
            }
            TransportError::Tls(m) => TransportError::Tls(format!("{at}: {}", scrub(m))),
            TransportError::Timeout => TransportError::Timeout,
            TransportError::Other(m) => TransportError::Other(format!("{at}: {}", scrub(m))),
        }
    }

    /// Text with the secret and the encoded credentials replaced, for anything a server
    /// might echo back.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in [self.client_secret.clone(), self.basic_credentials()] {
            if !secret.is_empty() {
                out = out.replace(&secret, "<redacted>");
            }
        }
        out
    }

    /// Reads the token endpoint's answer (RFC 6749 §5.1 and §5.2).
    fn read_answer(
        &self,
        response: &HttpResponse,
    ) -> Result<(String, Duration), ProvisioningError> {
        let url = self.token_url();
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        let Some(body) = body.filter(Value::is_object) else {
            let retry = response::retry_class(response, super::transport::now_unix());
            return Err(ProvisioningError::UnexpectedResponse {
                status: response.status,
                reason: self.scrub(&format!(
                    "the OAuth 2.0 token endpoint {url} did not answer with a JSON object: {}",
                    response::excerpt(&response.body)
                )),
                retry,
            });
        };
        if !(200..300).contains(&response.status) || body.get("error").is_some() {
            return Err(self.token_error(response, &body));
        }
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProvisioningError::UnexpectedResponse {
                status: response.status,
                reason: format!(
                    "the OAuth 2.0 token endpoint {url} answered without an access_token"
                ),
                retry: RetryClass::Permanent,
            })?;
        // It travels in a header: a control character would split it.
        if access_token
            .chars()
            .any(|c| c.is_control() || !c.is_ascii())
        {
            return Err(ProvisioningError::UnexpectedResponse {
                status: response.status,
                reason: format!(
                    "the OAuth 2.0 token endpoint {url} returned an access token that cannot \
                     travel in an HTTP header"
                ),
                retry: RetryClass::Permanent,
            });
        }
        // RFC 6749 requires token_type; a server that leaves it out is taken to mean Bearer.
        if let Some(kind) = body.get("token_type").and_then(Value::as_str)
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(ProvisioningError::UnexpectedResponse {
                status: response.status,
                reason: format!(
                    "the OAuth 2.0 token endpoint {url} issued a token of type {:?}; only Bearer \
                     tokens (RFC 6750) are supported",
                    kind.chars().take(40).collect::<String>()
                ),
                retry: RetryClass::Permanent,
            });
        }
        let lifetime = body
            .get("expires_in")
            .and_then(crate::scim::lenient::lenient_u64)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((access_token.to_string(), lifetime))
    }

    /// An error answer (RFC 6749 §5.2) as a clear error: the OAuth error code travels as
    /// the `scim-type`, the explanation as the `detail`.
    fn token_error(&self, response: &HttpResponse, body: &Value) -> ProvisioningError {
        let url = self.token_url();
        let code = body.get("error").and_then(Value::as_str).map(|c| {
            c.chars()
                .filter(|c| !c.is_control())
                .take(60)
                .collect::<String>()
        });
        let meaning = match code.as_deref() {
            Some("invalid_client") => format!(
                "the client secret or id is wrong, or the client `{}` is disabled or unknown",
                self.client_id
            ),
            Some("unauthorized_client") => format!(
                "the client `{}` may not use the client_credentials grant",
                self.client_id
            ),
            Some("invalid_scope") => match &self.settings.scope {
                Some(scope) => format!("the scope `{scope}` is not allowed for this client"),
                None => "the client has no default scope; set `oauth2.scope`".to_string(),
            },
            Some("invalid_target") => "the audience or resource is not allowed".to_string(),
            Some("unsupported_grant_type") => {
                "the server does not offer the client_credentials grant".to_string()
            }
            Some("invalid_request") => "the server refused the token request".to_string(),
            Some(_) => "the server refused to issue a token".to_string(),
            None => format!("HTTP {} without an OAuth error code", response.status),
        };
        let described = body
            .get("error_description")
            .and_then(Value::as_str)
            .map(|d| {
                d.chars()
                    .filter(|c| !c.is_control())
                    .take(300)
                    .collect::<String>()
            })
            .filter(|d| !d.is_empty())
            .map(|d| format!(" (the server says: {d})"))
            .unwrap_or_default();
        let detail = self.scrub(&format!(
            "OAuth 2.0 token endpoint {url}: {}{meaning}{described}",
            code.as_deref()
                .map(|c| format!("{c}: "))
                .unwrap_or_default()
        ));
        let retry = match response.status {
            429 | 500..=599 => response::retry_class(response, super::transport::now_unix()),
            _ => RetryClass::Permanent,
        };
        ProvisioningError::Scim(ScimError {
            status: response.status,
            scim_type: code,
            detail: Some(detail),
            retry,
        })
    }
}

fn invalid(message: impl Into<String>) -> ProvisioningError {
    ProvisioningError::InvalidConfig(message.into())
}

#[cfg(test)]
#[path = "tests/oauth2.rs"]
mod tests;
