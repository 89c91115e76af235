//! Carries SCIM requests through the host's HTTP port: builds URLs with correctly encoded
//! paths and queries, adds the authentication and content headers, counts requests, and
//! logs each exchange without its credentials.

use std::cell::Cell;

use serde_json::Value;

use crate::scim::text;
pub use crate::scim::uri::encode_component;
use crate::scim::uri::is_empty_or_dot_segment;

use super::oauth2::ClientCredentials;
use crate::config::{Auth, ConnectorConfig};
use crate::error::{ProvisioningError, TransportError};
use crate::ports::{HttpPort, HttpRequest, HttpResponse, LogLevel, LogPort, Method};

/// The SCIM media type (RFC 7644 §3.1).
pub const SCIM_JSON: &str = "application/scim+json";

/// The path of one resource under a collection, `/Users/{id}`, with the id percent-encoded
/// as one segment. An empty or dot-segment id (`.`, `..`, also percent-encoded) is refused:
/// URL parsers normalise `/Users/..` to the collection's parent, so a DELETE or PUT would
/// land on another path. Ids read from servers are checked where they are read; this is the
/// last guard, for ids that come back from a host's stored links.
pub fn resource_path(collection: &str, id: &str) -> Result<String, ProvisioningError> {
    if is_empty_or_dot_segment(id) {
        return Err(ProvisioningError::Other(format!(
            "the remote id {:?} cannot name a resource (it is empty or a dot-segment)",
            id.chars().take(40).collect::<String>()
        )));
    }
    Ok(format!("{collection}/{}", encode_component(id)))
}

/// Sends SCIM requests relative to the base URL.
pub struct Transport<'a, H: HttpPort, L: LogPort> {
    config: &'a ConnectorConfig,
    http: &'a H,
    log: &'a L,
    requests: Cell<u32>,
}

impl<'a, H: HttpPort, L: LogPort> Transport<'a, H, L> {
    /// A transport for one call; its request counter starts at zero.
    pub fn new(config: &'a ConnectorConfig, http: &'a H, log: &'a L) -> Self {
        Transport {
            config,
            http,
            log,
            requests: Cell::new(0),
        }
    }

    /// How many requests this transport has sent.
    pub fn requests(&self) -> u32 {
        self.requests.get()
    }

    /// The absolute URL of a path relative to the base URL (`/Users/…?…`).
    pub fn url(&self, relative: &str) -> String {
        format!("{}{relative}", self.config.base_url)
    }

    /// Sends a request with an optional JSON body and extra headers (such as `If-Match`).
    pub fn send(
        &self,
        method: Method,
        relative: &str,
        body: Option<&Value>,
        extra_headers: &[(&str, &str)],
    ) -> Result<HttpResponse, ProvisioningError> {
        let url = self.url(relative);
        let mut headers = vec![(
            "Accept".to_string(),
            format!("{SCIM_JSON}, application/json"),
        )];
        let oauth2 = match &self.config.auth {
            Auth::OAuth2(credentials) => Some(credentials),
            _ => None,
        };
        let mut access_token = match oauth2 {
            Some(credentials) => Some(self.access_token(credentials)?),
            None => None,
        };
        if let Some(auth) = self.config.auth.header_value() {
            headers.push(("Authorization".to_string(), auth));
        }
        let mut body = match body {
            Some(v) => {
                headers.push(("Content-Type".to_string(), SCIM_JSON.to_string()));
                Some(text::json(v).into_bytes())
            }
            None => None,
        };
        for (name, value) in extra_headers {
            headers.push(((*name).to_string(), (*value).to_string()));
        }
        // The body is kept for a retry only when there can be one.
        let first_body = if oauth2.is_some() {
            body.clone()
        } else {
            body.take()
        };
        let mut response =
            self.exchange(&method, &url, &headers, first_body, access_token.as_deref());
        // A 401 to a cached token means it expired or was revoked before its time: fetch a
        // new one and try once more (a second 401 is the server's answer).
        if let (Some(credentials), Some(refused), Ok(HttpResponse { status: 401, .. })) =
            (oauth2, access_token.as_deref(), &response)
        {
            credentials.invalidate(refused);
            self.log.log(
                LogLevel::Info,
                &format!(
                    "{} {url} -> 401 with the cached access token; fetching a new one and \
                     retrying once",
                    method.as_str()
                ),
            );
            access_token = Some(self.access_token(credentials)?);
            response = self.exchange(&method, &url, &headers, body, access_token.as_deref());
        }
        let mut response = response.map_err(ProvisioningError::from)?;
        // A server that echoes request headers (some HTML error pages do) must not smuggle
        // our credentials into error messages and logs.
        for secret in self.config.auth.secrets() {
            response.body = redact(&response.body, secret.as_bytes());
        }
        Ok(response)
    }

    /// A token for this request, the token endpoint's request counted with the others.
    fn access_token(&self, credentials: &ClientCredentials) -> Result<String, ProvisioningError> {
        let token = credentials.access_token(self.http, self.log, self.config.timeout_ms)?;
        self.requests
            .set(self.requests.get().saturating_add(token.requests));
        Ok(token.access_token)
    }

    /// One exchange, counted and logged (without its credentials).
    fn exchange(
        &self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
        access_token: Option<&str>,
    ) -> Result<HttpResponse, TransportError> {
        let mut headers = headers.to_vec();
        if let Some(token) = access_token {
            headers.push(("Authorization".to_string(), format!("Bearer {token}")));
        }
        let method_name = method.as_str();
        self.requests.set(self.requests.get().saturating_add(1));
        let result = self.http.send(HttpRequest {
            method: method.clone(),
            url: url.to_string(),
            headers,
            body,
            timeout_ms: self.config.timeout_ms,
        });
        match &result {
            Ok(r) => self.log.log(
                LogLevel::Debug,
                &format!("{method_name} {url} -> {}", r.status),
            ),
            Err(e) => self
                .log
                .log(LogLevel::Warn, &format!("{method_name} {url} failed: {e}")),
        }
        result
    }

    /// `GET` a relative path.
    pub fn get(&self, relative: &str) -> Result<HttpResponse, ProvisioningError> {
        self.send(Method::Get, relative, None, &[])
    }
}

/// `body` with every occurrence of `secret` replaced by `<redacted>`.
fn redact(body: &[u8], secret: &[u8]) -> Vec<u8> {
    if secret.is_empty() || body.len() < secret.len() {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(secret) {
            out.extend_from_slice(b"<redacted>");
            i += secret.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// The current time in seconds since the Unix epoch, for `Retry-After` dates. In the
/// component this reads `wasi:clocks` through std.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_credentials_are_redacted() {
        assert_eq!(
            redact(b"<p>Bearer s3cret</p>", b"s3cret"),
            b"<p>Bearer <redacted></p>"
        );
        assert_eq!(redact(b"abc", b""), b"abc");
        assert_eq!(redact(b"ab", b"abc"), b"ab");
        assert_eq!(redact(b"xxxx", b"xx"), b"<redacted><redacted>");
    }
}

#[cfg(test)]
#[path = "tests/ids.rs"]
mod ids_tests;
