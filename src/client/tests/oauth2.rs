//! OAuth 2.0 client credentials against a scripted token endpoint and SCIM server.

use std::cell::Cell;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::client::connector::Connector;
use crate::client::fake::{FakeHttp, MemoryLog, json_response};
use crate::config::ConnectorConfig;

const BASE: &str = "https://scim.example/v2";
const TOKEN_URL: &str = "https://idp.example/oauth2/token";
const SECRET: &str = "s3cret+/ü";

thread_local! {
    static NOW_MS: Cell<u64> = const { Cell::new(0) };
}

fn fake_now() -> Duration {
    Duration::from_millis(NOW_MS.with(Cell::get))
}

fn advance(secs: u64) {
    NOW_MS.with(|n| n.set(n.get() + secs * 1000));
}

fn policy(extra: serde_json::Value) -> String {
    let mut oauth2 = json!({"token_url": TOKEN_URL});
    if let (Some(o), Some(e)) = (oauth2.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    json!({"oauth2": oauth2}).to_string()
}

fn basic() -> Auth {
    Auth::Basic {
        username: "provisioner".into(),
        password: SECRET.into(),
    }
}

fn connector(policy_json: &str, http: FakeHttp) -> Connector<FakeHttp, MemoryLog> {
    let auth = match auth_for_policy(basic(), policy_json, false).unwrap() {
        Auth::OAuth2(c) => Auth::OAuth2(c.with_clock(fake_now)),
        other => panic!("{other:?}"),
    };
    let config = ConnectorConfig::new(BASE, auth, 5000).unwrap();
    Connector::open(config, policy_json, http, MemoryLog::default()).unwrap()
}

fn token(access_token: &str, expires_in: Option<u64>) -> HttpResponse {
    let mut body = json!({"access_token": access_token, "token_type": "Bearer"});
    if let Some(secs) = expires_in {
        body["expires_in"] = json!(secs);
    }
    json_response(200, body)
}

fn user() -> HttpResponse {
    json_response(200, json!({"id": "u1", "userName": "alice"}))
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    crate::ports::header(&request.headers, name)
}

fn body_text(request: &HttpRequest) -> String {
    String::from_utf8_lossy(request.body.as_deref().unwrap_or_default()).into_owned()
}

/// Everything the connector could have shown anyone: logs, and every SCIM request.
fn assert_no_secret(c: &Connector<FakeHttp, MemoryLog>, also: &[&str]) {
    let logs = c.log.0.borrow().join("\n");
    for s in [SECRET].iter().chain(also) {
        assert!(!logs.contains(s), "{s} in the log:\n{logs}");
    }
    for request in c
        .http
        .sent()
        .iter()
        .filter(|r| !r.url.starts_with(TOKEN_URL))
    {
        let text = format!("{request:?}");
        assert!(!text.contains(SECRET), "the secret went to the SCIM server");
        assert!(
            !header(request, "Authorization").is_some_and(|a| a.starts_with("Basic")),
            "basic credentials went to the SCIM server"
        );
    }
}

#[test]
fn the_policy_section_is_read_strictly() {
    assert_eq!(OAuth2Settings::from_policy("", false).unwrap(), None);
    assert_eq!(OAuth2Settings::from_policy("{}", false).unwrap(), None);
    let s = OAuth2Settings::from_policy(
        &policy(json!({"scope": "scim.write", "client_auth": "client_secret_post"})),
        false,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.client_auth, ClientAuth::ClientSecretPost);
    assert_eq!(s.scope.as_deref(), Some("scim.write"));
    for (json, needle) in [
        (json!({"oauth2": {}}).to_string(), "token_url"),
        (policy(json!({"tokn": 1})), "tokn"),
        (
            policy(json!({"client_auth": "private_key_jwt"})),
            "private_key_jwt",
        ),
        (json!({"oauth2": {"token_url": ""}}).to_string(), "empty"),
        (
            json!({"oauth2": {"token_url": "ftp://x"}}).to_string(),
            "https://",
        ),
        (
            json!({"oauth2": {"token_url": "https://u:p@idp.example/t"}}).to_string(),
            "credentials",
        ),
        (
            json!({"oauth2": {"token_url": "https://idp.example/t#f"}}).to_string(),
            "fragment",
        ),
        (
            json!({"oauth2": {"token_url": "http://idp.example/t"}}).to_string(),
            "allow_insecure_http",
        ),
        (policy(json!({"scope": " "})), "oauth2.scope"),
        (policy(json!({"audience": "a\nb"})), "oauth2.audience"),
    ] {
        let err = OAuth2Settings::from_policy(&json, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{json}: {err}");
    }
    assert!(
        OAuth2Settings::from_policy(
            &json!({"oauth2": {"token_url": "http://127.0.0.1:9/token"}}).to_string(),
            false
        )
        .is_ok()
    );
    assert!(
        OAuth2Settings::from_policy(
            &json!({"oauth2": {"token_url": "http://idp.example/t"}}).to_string(),
            true
        )
        .is_ok()
    );
    // The rest of the policy accepts the section.
    assert!(crate::policy::Policy::parse(&policy(json!({}))).is_ok());
}

#[test]
fn the_section_needs_basic_credentials_and_changes_nothing_without_it() {
    let with = policy(json!({}));
    for auth in [Auth::Bearer("t".into()), Auth::None] {
        let err = auth_for_policy(auth, &with, false).unwrap_err().to_string();
        assert!(err.contains("basic"), "{err}");
    }
    assert!(matches!(
        auth_for_policy(basic(), &with, false),
        Ok(Auth::OAuth2(_))
    ));
    assert_eq!(auth_for_policy(basic(), "{}", false).unwrap(), basic());
    let empty_secret = Auth::Basic {
        username: "id".into(),
        password: String::new(),
    };
    assert!(auth_for_policy(empty_secret, &with, false).is_err());
}

#[test]
fn the_token_is_fetched_once_and_sent_as_bearer_only_to_the_scim_server() {
    let http = FakeHttp::new(vec![token("tok-1", Some(3600)), user(), user()]);
    let c = connector(
        &policy(json!({"scope": "scim:read scim:write", "audience": "https://scim.example"})),
        http,
    );
    assert!(c.get_user("u1").unwrap().is_some());
    assert!(c.get_user("u1").unwrap().is_some());
    let sent = c.http.sent();
    assert_eq!(
        c.http.calls(),
        [
            format!("POST {TOKEN_URL}"),
            format!("GET {BASE}/Users/u1"),
            format!("GET {BASE}/Users/u1"),
        ]
    );
    // RFC 6749 §2.3.1: the id and secret form-encoded, then base64.
    assert_eq!(
        header(&sent[0], "Authorization"),
        Some(format!("Basic {}", base64_encode(b"provisioner:s3cret%2B%2F%C3%BC")).as_str())
    );
    assert_eq!(
        header(&sent[0], "Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        body_text(&sent[0]),
        "grant_type=client_credentials&scope=scim%3Aread%20scim%3Awrite&audience=https%3A%2F%2Fscim.example"
    );
    assert_eq!(header(&sent[1], "Authorization"), Some("Bearer tok-1"));
    assert_eq!(header(&sent[2], "Authorization"), Some("Bearer tok-1"));
    assert_no_secret(&c, &["tok-1"]);
}

#[test]
fn client_secret_post_puts_the_credentials_in_the_form() {
    let http = FakeHttp::new(vec![token("tok-post-7", None), user()]);
    let c = connector(&policy(json!({"client_auth": "client_secret_post"})), http);
    c.get_user("u1").unwrap();
    let sent = c.http.sent();
    assert_eq!(header(&sent[0], "Authorization"), None);
    assert_eq!(
        body_text(&sent[0]),
        "grant_type=client_credentials&client_id=provisioner&client_secret=s3cret%2B%2F%C3%BC"
    );
    assert_no_secret(&c, &["tok-post-7"]);
}

#[test]
fn a_token_is_renewed_shortly_before_it_expires() {
    let http = FakeHttp::new(vec![
        token("short", Some(10)),
        user(),
        user(),
        token("next", None),
        user(),
        user(),
        token("after-default", Some(60)),
        user(),
    ]);
    let c = connector(&policy(json!({})), http);
    c.get_user("u1").unwrap();
    advance(8); // 10 s less a tenth: still good at 8 s
    c.get_user("u1").unwrap();
    advance(1); // 9 s: renewed before it runs out
    c.get_user("u1").unwrap();
    // No expires_in: the default lifetime, less its margin.
    advance(DEFAULT_LIFETIME.as_secs() - 31);
    c.get_user("u1").unwrap();
    advance(1);
    c.get_user("u1").unwrap();
    let auth: Vec<_> = c
        .http
        .sent()
        .iter()
        .filter(|r| r.url.starts_with(BASE))
        .map(|r| header(r, "Authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer short",
            "Bearer short",
            "Bearer next",
            "Bearer next",
            "Bearer after-default"
        ]
    );
}

#[test]
fn a_401_fetches_a_new_token_and_retries_once() {
    let refused = json_response(401, json!({"status": "401", "detail": "token inactive"}));
    let http = FakeHttp::new(vec![
        token("revoked", Some(3600)),
        refused.clone(),
        token("fresh", Some(3600)),
        user(),
        // A server that refuses the fresh token too: one retry, then its answer.
        refused.clone(),
        token("fresher", Some(3600)),
        refused,
    ]);
    let c = connector(&policy(json!({})), http);
    let transport = c.transport();
    let resp = transport.get("/Users/u1").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(transport.requests(), 4, "the token requests count too");
    match c.get_user("u1") {
        Err(ProvisioningError::Scim(e)) => assert_eq!(e.status, 401),
        other => panic!("{other:?}"),
    }
    let auth: Vec<_> = c
        .http
        .sent()
        .iter()
        .map(|r| header(r, "Authorization").unwrap_or_default().to_string())
        .filter(|a| a.starts_with("Bearer"))
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer revoked",
            "Bearer fresh",
            "Bearer fresh",
            "Bearer fresher"
        ]
    );
    assert_eq!(c.http.sent().len(), 7, "no third attempt");
    assert_no_secret(&c, &["revoked", "fresh"]);
}

/// A POST's body travels again on the retry.
#[test]
fn the_retry_sends_the_same_body() {
    let http = FakeHttp::new(vec![
        token("a", Some(3600)),
        json_response(401, json!({})),
        token("b", Some(3600)),
        json_response(201, json!({"id": "x"})),
    ]);
    let c = connector(&policy(json!({})), http);
    let body = json!({"userName": "alice"});
    let resp = c
        .transport()
        .send(Method::Post, "/Users", Some(&body), &[])
        .unwrap();
    assert_eq!(resp.status, 201);
    let sent = c.http.sent();
    assert_eq!(sent[1].body, sent[3].body);
    assert!(body_text(&sent[3]).contains("alice"));
}

fn token_error(status: u16, error: &str) -> HttpResponse {
    json_response(
        status,
        json!({"error": error, "error_description": format!("no: {SECRET}")}),
    )
}

#[test]
fn token_endpoint_errors_are_clear_and_never_show_the_secret() {
    for (answer, code, needle, retry) in [
        (
            token_error(401, "invalid_client"),
            Some("invalid_client"),
            "the client secret or id is wrong",
            RetryClass::Permanent,
        ),
        (
            token_error(400, "unauthorized_client"),
            Some("unauthorized_client"),
            "may not use the client_credentials grant",
            RetryClass::Permanent,
        ),
        (
            token_error(400, "invalid_scope"),
            Some("invalid_scope"),
            "the scope `scim` is not allowed",
            RetryClass::Permanent,
        ),
        (
            token_error(503, "temporarily_unavailable"),
            Some("temporarily_unavailable"),
            "refused to issue a token",
            RetryClass::Backoff,
        ),
        (
            json_response(500, json!({})),
            None,
            "HTTP 500 without an OAuth error code",
            RetryClass::Backoff,
        ),
    ] {
        let c = connector(
            &policy(json!({"scope": "scim"})),
            FakeHttp::new(vec![answer]),
        );
        let err = c.get_user("u1").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{text}");
        assert!(text.contains(TOKEN_URL), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!format!("{err:?}").contains(SECRET));
        match &err {
            ProvisioningError::Scim(e) => {
                assert_eq!(e.scim_type.as_deref(), code);
                assert_eq!(e.retry, retry, "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.http.sent().len(), 1, "nothing went to the SCIM server");
        assert_no_secret(&c, &[]);
    }
}

#[test]
fn odd_token_answers_are_unexpected_responses() {
    let mut html = json_response(200, json!({}));
    html.headers = vec![("Content-Type".into(), "text/html".into())];
    html.body = format!("<h1>Login</h1> {SECRET}").into_bytes();
    for (answer, needle) in [
        (html, "did not answer with a JSON object"),
        (
            json_response(200, json!({"token_type": "Bearer"})),
            "without an access_token",
        ),
        (
            json_response(
                200,
                json!({"access_token": "a\r\nX: y", "token_type": "Bearer"}),
            ),
            "cannot travel in an HTTP header",
        ),
        (
            json_response(200, json!({"access_token": "a", "token_type": "DPoP"})),
            "only Bearer",
        ),
    ] {
        let c = connector(&policy(json!({})), FakeHttp::new(vec![answer]));
        match c.get_user("u1") {
            Err(e @ ProvisioningError::UnexpectedResponse { .. }) => {
                let text = e.to_string();
                assert!(text.contains(needle), "{text}");
                assert!(!text.contains(SECRET), "{text}");
            }
            other => panic!("{needle}: {other:?}"),
        }
        assert_eq!(c.http.sent().len(), 1);
    }
}

#[test]
fn a_transport_failure_names_the_token_endpoint() {
    let c = connector(
        &policy(json!({})),
        FakeHttp::failing(TransportError::Denied(
            "https://idp.example is not the configured SCIM origin".into(),
        )),
    );
    match c.get_user("u1") {
        Err(ProvisioningError::Transport(TransportError::Denied(m))) => {
            assert!(m.contains("OAuth 2.0 token endpoint"), "{m}");
            assert!(m.contains("allow the token URL's origin"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let c = connector(
        &policy(json!({})),
        FakeHttp::failing(TransportError::CannotConnect("refused".into())),
    );
    let err = c.get_user("u1").unwrap_err();
    assert_eq!(err.retry_class(), RetryClass::Backoff);
    assert!(err.to_string().contains(TOKEN_URL), "{err}");
}

#[test]
fn debug_never_shows_the_secret_or_the_token() {
    let c = connector(
        &policy(json!({})),
        FakeHttp::new(vec![token("tok-debug", Some(60)), user()]),
    );
    c.get_user("u1").unwrap();
    let shown = format!("{:?}", c.config);
    assert!(
        shown.contains("provisioner") && shown.contains(TOKEN_URL),
        "{shown}"
    );
    assert!(
        !shown.contains(SECRET) && !shown.contains("tok-debug"),
        "{shown}"
    );
    // The transport scrubs the live token and the secret from what servers echo.
    let secrets = c.config.auth.secrets();
    assert!(secrets.contains(&"tok-debug".to_string()));
    assert!(secrets.contains(&SECRET.to_string()));
}

/// An absurd `expires_in` cannot overflow the clock: the token is kept a day at most.
#[test]
fn an_absurd_lifetime_is_capped_at_a_day() {
    let http = FakeHttp::new(vec![
        json_response(
            200,
            json!({"access_token": "forever", "token_type": "bearer", "expires_in": u64::MAX}),
        ),
        user(),
        user(),
        token("next-day", Some(60)),
        user(),
    ]);
    let c = connector(&policy(json!({})), http);
    c.get_user("u1").unwrap();
    advance(MAX_LIFETIME.as_secs() - 61);
    c.get_user("u1").unwrap();
    advance(2);
    c.get_user("u1").unwrap();
    let auth: Vec<_> = c
        .http
        .sent()
        .iter()
        .filter(|r| r.url.starts_with(BASE))
        .map(|r| header(r, "Authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        auth,
        ["Bearer forever", "Bearer forever", "Bearer next-day"]
    );
}
