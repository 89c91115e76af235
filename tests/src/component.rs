//! Loading the built component once per test process, and small helpers for driving it.

use std::sync::OnceLock;

use host_example::types::{
    CmsUser, FieldValue, Link, ProvisionOutcome, ProvisioningError, UserEvent,
};
use host_example::{ConnectorSettings, Credentials, Runtime, Session};

use crate::peers::Peer;

/// The component, compiled once for the whole test binary.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| match Runtime::new(Runtime::built_component_path()) {
        Ok(r) => r,
        Err(e) => panic!("cannot load the component: {e:#}"),
    })
}

/// Settings for a peer with its own token, a 10 s timeout and the given policy.
pub fn settings(peer: &Peer, policy_json: &str) -> ConnectorSettings {
    ConnectorSettings {
        base_url: peer.base_url.clone(),
        credentials: Credentials::Bearer(peer.token.clone()),
        timeout_ms: 10_000,
        policy_json: policy_json.to_string(),
    }
}

/// Opens a session on a peer, failing the test on any error.
pub fn open(settings: &ConnectorSettings) -> Session {
    match runtime().open(settings) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("open failed: {}", host_example::describe_error(&e)),
        Err(e) => panic!("trap while opening: {e:#}"),
    }
}

/// A Drupal-style user: name, mail, first and last name, roles.
pub fn drupal_user(id: &str, name: &str, first: &str, last: &str) -> CmsUser {
    let text = |s: &str| FieldValue::Text(s.to_string());
    CmsUser {
        id: id.to_string(),
        fields: vec![
            ("name".into(), text(name)),
            ("mail".into(), text(&format!("{name}@example.com"))),
            ("field_first_name".into(), text(first)),
            ("field_last_name".into(), text(last)),
            ("roles".into(), FieldValue::TextList(vec!["editor".into()])),
        ],
        active: true,
    }
}

/// Provisions, failing the test on a trap (not on the component's own error).
pub fn provision(
    session: &mut Session,
    user: &CmsUser,
    event: UserEvent,
    link: Option<&Link>,
) -> Result<ProvisionOutcome, ProvisioningError> {
    match session.provision(user, event, link) {
        Ok(r) => r,
        Err(e) => panic!("trap while provisioning: {e:#}"),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for the engine and mapping tests (appended).

/// The guest's log lines, kept in memory by [`open_logged`].
pub type LogLines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Opens a session whose guest log lines (every level, debug included: each request's
/// `METHOD URL -> STATUS`) are kept in memory, as `host-example -v` would print them.
pub fn open_logged(settings: &ConnectorSettings) -> (Session, LogLines) {
    let (sink, lines) = host_example::logging::LogSink::memory();
    match runtime().open_with_log(settings, sink) {
        Ok(Ok(s)) => (s, lines),
        Ok(Err(e)) => panic!("open failed: {}", host_example::describe_error(&e)),
        Err(e) => panic!("trap while opening: {e:#}"),
    }
}

/// Opens a connector expecting the component to refuse it; returns its error.
pub fn open_err(settings: &ConnectorSettings) -> ProvisioningError {
    match runtime().open(settings) {
        Ok(Ok(_)) => panic!("the connector opened, but an error was expected"),
        Ok(Err(e)) => e,
        Err(e) => panic!("trap while opening: {e:#}"),
    }
}

/// The requests in a log (`GET http://… -> 200`), in order.
pub fn logged_requests(lines: &LogLines) -> Vec<String> {
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("[debug] "))
        .filter(|l| l.contains(" -> "))
        .map(str::to_string)
        .collect()
}

/// The requests in a log that change something on the server (POST, PUT, PATCH, DELETE).
pub fn logged_writes(lines: &LogLines) -> Vec<String> {
    logged_requests(lines)
        .into_iter()
        .filter(|l| {
            ["POST ", "PUT ", "PATCH ", "DELETE "]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .collect()
}

/// A text field value.
pub fn text(s: &str) -> FieldValue {
    FieldValue::Text(s.to_string())
}

/// Sets a field of a user, replacing any value it had.
pub fn set_field(user: &mut CmsUser, name: &str, value: FieldValue) {
    remove_field(user, name);
    user.fields.push((name.to_string(), value));
}

/// Removes a field from a user (as a CMS does when a field is emptied).
pub fn remove_field(user: &mut CmsUser, name: &str) {
    user.fields.retain(|(n, _)| n != name);
}

/// Percent-encodes a string for a URL query or path segment (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The users a plain-HTTP `GET /Users?filter=…` finds (up to 100), failing the test on
/// anything but a 200 ListResponse.
pub fn find_users(peer: &Peer, filter: &str) -> Vec<serde_json::Value> {
    let url = peer.url(&format!("/Users?filter={}&count=100", url_encode(filter)));
    list_users_at(peer, &url)
}

/// Every user on the peer (up to 100), by a plain-HTTP `GET /Users`.
pub fn all_users(peer: &Peer) -> Vec<serde_json::Value> {
    list_users_at(peer, &peer.url("/Users?count=100"))
}

fn list_users_at(peer: &Peer, url: &str) -> Vec<serde_json::Value> {
    let (status, body) = crate::peers::get_json(url, &peer.token)
        .unwrap_or_else(|e| panic!("GET {url} on {}: {e:#}", peer.name));
    assert_eq!(status, 200, "GET {url} on {}: {body}", peer.name);
    body["Resources"].as_array().cloned().unwrap_or_default()
}

/// A plain-HTTP `GET /Users/{id}` (the id percent-encoded): the status and the body.
pub fn remote_user(peer: &Peer, remote_id: &str) -> (u16, serde_json::Value) {
    let url = peer.url(&format!("/Users/{}", url_encode(remote_id)));
    crate::peers::get_json(&url, &peer.token)
        .unwrap_or_else(|e| panic!("GET {url} on {}: {e:#}", peer.name))
}

/// The ids of the members of the group with this displayName (None when it is missing).
pub fn group_members(peer: &Peer, name: &str) -> Option<Vec<String>> {
    let filter = url_encode(&format!("displayName eq \"{name}\""));
    let (status, body) =
        crate::peers::get_json(&peer.url(&format!("/Groups?filter={filter}")), &peer.token)
            .expect("GET /Groups");
    assert_eq!(status, 200, "{}: {body}", peer.name);
    let group = body["Resources"].as_array()?.first()?.clone();
    let id = group["id"].as_str()?.to_string();
    // Read the group itself: list responses may leave members out.
    let (_, full) =
        crate::peers::get_json(&peer.url(&format!("/Groups/{id}")), &peer.token).expect("GET");
    Some(
        full["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| x["value"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    )
}
