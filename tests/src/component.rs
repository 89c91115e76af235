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
