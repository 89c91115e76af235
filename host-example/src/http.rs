//! The `http-client` capability: sends the guest's requests with ureq (rustls, certificate
//! verification on), honours each request's timeout, follows no redirects, and refuses any
//! request that does not go to the configured origin.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::time::Duration;

use ureq::RequestExt;

use crate::bindings::scim::provisioner::http_client::{
    self as wit, HttpRequest, HttpResponse, Method, TransportError,
};

/// The largest response body the host hands to the guest.
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Which origins the guest may reach.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// A policy that allows nothing.
    pub fn deny_all() -> Self {
        OriginPolicy::default()
    }

    /// A policy that allows the origin (scheme, host, port) of `base_url`.
    pub fn for_base_url(base_url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(base_url)
            .map_err(|e| anyhow::anyhow!("invalid SCIM base URL {base_url:?}: {e}"))?;
        Ok(OriginPolicy {
            allowed: vec![url.origin().ascii_serialization()],
        })
    }

    /// The origin of `base_url`, and the token endpoint's when the policy JSON has an
    /// `oauth2` section (OAuth 2.0 client credentials): the second and only other origin
    /// the guest may reach. An unreadable policy adds nothing; the component reports it.
    pub fn for_connector(base_url: &str, policy_json: &str) -> anyhow::Result<Self> {
        let mut policy = Self::for_base_url(base_url)?;
        if let Some(token_url) = crate::oauth2::token_url(policy_json)
            && let Ok(url) = url::Url::parse(&token_url)
        {
            let origin = url.origin().ascii_serialization();
            if !policy.allowed.contains(&origin) {
                policy.allowed.push(origin);
            }
        }
        Ok(policy)
    }

    fn allows(&self, url: &url::Url) -> bool {
        let origin = url.origin().ascii_serialization();
        self.allowed.contains(&origin)
    }
}

/// A write request held back by a dry run.
#[derive(Debug, Clone)]
pub struct HeldRequest {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// The body, as text.
    pub body: String,
}

/// How long a name resolved for the origin is reused.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// ureq's resolver with a short memory. ureq resolves the host before every request, even
/// one that goes out on a pooled connection, and under a timeout it does so on a new thread
/// (its way to bound `getaddrinfo`): a thread and a lookup per SCIM request, 31,150 threads
/// in one `bench` run. This keeps what the default resolver found for each origin for
/// [`RESOLVED_FOR`]; a lookup that fails is not kept.
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    found: std::sync::Mutex<HashMap<String, (std::time::Instant, Vec<std::net::SocketAddr>)>>,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let remembered = self
            .found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|(at, _)| at.elapsed() < RESOLVED_FOR)
            .map(|(_, addrs)| addrs.clone());
        if let Some(addrs) = remembered {
            let mut out = self.empty();
            for a in addrs {
                out.push(a);
            }
            return Ok(out);
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (std::time::Instant::now(), addrs.to_vec()));
        Ok(addrs)
    }
}

/// The host side of `http-client`.
pub struct HttpCapability {
    policy: OriginPolicy,
    /// One agent per timeout, so connections are pooled across calls.
    agents: HashMap<u32, ureq::Agent>,
    /// In a dry run, the writes that were held back instead of sent.
    dry_run: Option<Vec<HeldRequest>>,
}

impl HttpCapability {
    /// A capability bound to an origin policy.
    pub fn new(policy: OriginPolicy) -> Self {
        HttpCapability {
            policy,
            agents: HashMap::new(),
            dry_run: None,
        }
    }

    /// A dry run: reads are sent (look-ups need real answers), writes are held back and
    /// answered `denied`, so the component stops before changing anything.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = Some(Vec::new());
        self
    }

    /// The writes a dry run held back so far.
    pub fn take_held(&mut self) -> Vec<HeldRequest> {
        self.dry_run
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn agent(&mut self, timeout_ms: u32) -> &ureq::Agent {
        self.agents.entry(timeout_ms).or_insert_with(|| {
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_millis(u64::from(timeout_ms.max(1)))))
                .user_agent(concat!("scim-provisioner-host/", env!("CARGO_PKG_VERSION")))
                .build();
            ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::new(),
                CachingResolver::default(),
            )
        })
    }

    /// Sends one request on the guest's behalf, and records it in [`crate::metrics`].
    pub fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let (url, method) = (request.url.clone(), request.method.clone());
        let started = std::time::Instant::now();
        let result = self.send_unrecorded(request);
        crate::metrics::global().client_request(&url, &method, &result, started.elapsed());
        result
    }

    fn send_unrecorded(&mut self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        // Checked on the raw text: the URL parser would resolve the segments away, and
        // `DELETE /Users/..` would become `DELETE /scim/v2/`.
        if has_dot_segment(&request.url) {
            return Err(TransportError::Denied(
                "the request path holds a dot-segment (`.` or `..`)".into(),
            ));
        }
        let url = url::Url::parse(&request.url)
            .map_err(|e| TransportError::InvalidUrl(format!("{}: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransportError::InvalidUrl(format!(
                "only http and https are allowed, not {}",
                url.scheme()
            )));
        }
        if !self.policy.allows(&url) {
            return Err(TransportError::Denied(format!(
                "{} is not the configured SCIM origin",
                url.origin().ascii_serialization()
            )));
        }
        let method = match &request.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Other(m) => m.as_str(),
        };
        if let Some(held) = self.dry_run.as_mut()
            && !matches!(request.method, Method::Get)
        {
            held.push(HeldRequest {
                method: method.to_string(),
                url: url.to_string(),
                body: String::from_utf8_lossy(request.body.as_deref().unwrap_or_default())
                    .into_owned(),
            });
            return Err(TransportError::Denied("dry run: not sent".into()));
        }
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(url.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let agent = self.agent(request.timeout_ms).clone();
        // GET and DELETE carry no body; only attach one when the guest sent one.
        let built = match request.body {
            Some(body) => builder.body(body).map(|r| run(r, &agent)),
            None => builder.body(()).map(|r| run(r, &agent)),
        };
        // A request that cannot be built (an URI past the http crate's 64 KiB, say) will
        // never be sent, so it is not a transient failure: invalid-url, which is permanent.
        let mut response = built
            .map_err(|e| TransportError::InvalidUrl(format!("could not build the request: {e}")))?
            .map_err(map_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(map_error)?;
        Ok(wit::HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// True when the path of `raw` (a URL as the guest wrote it) has a `.` or `..` segment,
/// plain or percent-encoded (`%2e`), with `/` or `\` (which URL parsers treat alike for
/// http) as separators.
fn has_dot_segment(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let Some(start) = after_scheme.find(['/', '\\']) else {
        return false;
    };
    let path = &after_scheme[start..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = path.to_ascii_lowercase().replace("%2e", ".");
    decoded
        .split(['/', '\\'])
        .any(|segment| segment == "." || segment == "..")
}

fn run(
    request: ureq::http::Request<impl ureq::AsSendBody>,
    agent: &ureq::Agent,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    request
        .with_agent(agent)
        .configure()
        .allow_non_standard_methods(true)
        .build()
        .run()
}

/// Sorts ureq's failures into the WIT's transport cases.
fn map_error(e: ureq::Error) -> TransportError {
    match e {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::BadUri(m) => TransportError::InvalidUrl(m),
        ureq::Error::HostNotFound => TransportError::CannotConnect("host not found".into()),
        ureq::Error::ConnectionFailed => TransportError::CannotConnect("connection failed".into()),
        ureq::Error::Tls(m) => TransportError::Tls(m.to_string()),
        ureq::Error::Rustls(e) => TransportError::Tls(e.to_string()),
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => TransportError::Timeout,
            ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::AddrNotAvailable
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable => TransportError::CannotConnect(io.to_string()),
            _ if is_tls_io_error(&io) => TransportError::Tls(io.to_string()),
            _ => TransportError::Other(io.to_string()),
        },
        other => TransportError::Other(other.to_string()),
    }
}

/// rustls reports certificate failures through `io::Error` wrapping a `rustls::Error`.
fn is_tls_io_error(io: &std::io::Error) -> bool {
    let text = io.to_string().to_ascii_lowercase();
    text.contains("certificate") || text.contains("tls") || text.contains("handshake")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_resolved_once_and_remembered() {
        use ureq::unversioned::resolver::Resolver;
        let resolver = CachingResolver::default();
        let config = ureq::Agent::config_builder().build();
        let resolve = |url: &str| {
            let uri: ureq::http::Uri = url.parse().unwrap();
            resolver
                .resolve(
                    &uri,
                    &config,
                    ureq::unversioned::transport::NextTimeout {
                        after: ureq::unversioned::transport::time::Duration::from_secs(5),
                        reason: ureq::Timeout::Resolve,
                        ..Default::default()
                    },
                )
                .map(|a| a.to_vec())
        };
        let first = resolve("http://127.0.0.1:8080/scim/v2/Users").unwrap();
        assert_eq!(first, ["127.0.0.1:8080".parse().unwrap()]);
        // Another path of the same origin comes from memory; another origin does not.
        assert_eq!(
            resolve("http://127.0.0.1:8080/scim/v2/Groups").unwrap(),
            first
        );
        resolve("http://127.0.0.1:9090/").unwrap();
        let found = resolver.found.lock().unwrap();
        let mut keys: Vec<&String> = found.keys().collect();
        keys.sort();
        assert_eq!(keys, ["http://127.0.0.1:8080", "http://127.0.0.1:9090"]);
    }

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Delete,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: 200,
        }
    }

    /// No remote id can turn a request into one on another path (`/Users/..` would be
    /// normalised to the base URL by the URL parser).
    #[test]
    fn refuses_dot_segments() {
        let policy = OriginPolicy::for_base_url("http://127.0.0.1:9/scim/v2").unwrap();
        let mut http = HttpCapability::new(policy);
        for url in [
            "http://127.0.0.1:9/scim/v2/Users/..",
            "http://127.0.0.1:9/scim/v2/Users/../Groups/x",
            "http://127.0.0.1:9/scim/v2/Users/.",
            "http://127.0.0.1:9/scim/v2/Users/%2e%2e",
            "http://127.0.0.1:9/scim/v2/Users/%2E%2e?x=1",
            "http://127.0.0.1:9/scim/v2/Users/.%2E/x",
            "http://127.0.0.1:9/scim/v2/Users\\..",
        ] {
            assert!(
                matches!(http.send(request(url)), Err(TransportError::Denied(_))),
                "{url} must be denied"
            );
        }
        // Dots inside a segment, or in the query, are not dot-segments.
        for url in [
            "http://127.0.0.1:9/scim/v2/Users/a..b",
            "http://127.0.0.1:9/scim/v2/Users/...",
            "http://127.0.0.1:9/scim/v2/Users?filter=userName%20eq%20%22..%22",
        ] {
            assert!(!has_dot_segment(url), "{url}");
        }
    }
}
