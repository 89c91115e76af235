//! The foundation, end to end: the built component under wasmtime, against scim2-server
//! (PyPI) and the SCIMMY app (npm). Test connection, its failure modes, and a user created
//! through the component read back with a plain HTTP GET.

use host_example::types::{
    Action, ProvisioningError, RetryClass, TransportError, TransportFailure, UserEvent,
};
use scim_provisioner_tests::component::{drupal_user, open, provision, runtime, settings};
use scim_provisioner_tests::peers::{self, Peer, get_json};

fn connection_succeeds(peer: &Peer) {
    let mut session = open(&settings(peer, ""));
    let caps = session
        .test_connection()
        .expect("no trap")
        .unwrap_or_else(|e| panic!("{}: {}", peer.name, host_example::describe_error(&e)));
    assert!(caps.discovered, "{} has a ServiceProviderConfig", peer.name);
    assert!(caps.patch, "{} supports PATCH", peer.name);
    assert!(caps.filter_max_results.is_some());
}

#[test]
fn test_connection_succeeds_against_scim2_server() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    connection_succeeds(&peer);
    let mut session = open(&settings(&peer, ""));
    let caps = session.test_connection().unwrap().unwrap();
    assert!(caps.etag, "scim2-server advertises ETags");
    assert!(caps.bulk.is_some(), "scim2-server advertises bulk");
}

#[test]
fn test_connection_succeeds_against_scimmy() {
    let peer = peers::scimmy().expect("SCIMMY app starts");
    connection_succeeds(&peer);
}

#[test]
fn wrong_token_is_reported_as_401() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut s = settings(&peer, "");
    s.credentials = host_example::Credentials::Bearer("wrong-token".into());
    let mut session = open(&s);
    match session.test_connection().unwrap() {
        Err(ProvisioningError::Scim(e)) => assert_eq!(e.status, 401),
        Err(ProvisioningError::UnexpectedResponse(u)) => assert_eq!(u.status, 401),
        other => panic!("expected a 401, got {other:?}"),
    }
    let err = session.test_connection().unwrap().unwrap_err();
    let text = host_example::describe_error(&err);
    assert!(text.contains("401") && text.contains("token"), "{text}");
    assert!(!text.contains(&peer.token) && !text.contains("wrong-token"));
}

#[test]
fn wrong_base_url_is_reported_as_404() {
    let peer = peers::scim2_server().expect("scim2-server starts");
    let mut s = settings(&peer, "");
    s.base_url = format!("{}/nope", peer.base_url);
    let mut session = open(&s);
    let err = session.test_connection().unwrap().unwrap_err();
    let status = match &err {
        ProvisioningError::Scim(e) => e.status,
        ProvisioningError::UnexpectedResponse(u) => u.status,
        other => panic!("expected a 404, got {other:?}"),
    };
    assert_eq!(status, 404);
    assert!(host_example::describe_error(&err).contains("base URL"));
}

#[test]
fn unreachable_server_is_cannot_connect() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let s = host_example::ConnectorSettings {
        base_url: format!("http://127.0.0.1:{port}/v2"),
        credentials: host_example::Credentials::Bearer("t".into()),
        timeout_ms: 2000,
        policy_json: String::new(),
    };
    let mut session = open(&s);
    match session.test_connection().unwrap() {
        Err(ProvisioningError::Transport(TransportFailure {
            error: TransportError::CannotConnect(_),
            retry: RetryClass::Backoff,
        })) => {}
        other => panic!("expected cannot-connect, got {other:?}"),
    }
}

#[test]
fn invalid_configuration_is_refused_at_open() {
    let peer_less = host_example::ConnectorSettings {
        base_url: "ftp://example.com".into(),
        credentials: host_example::Credentials::Bearer("t".into()),
        timeout_ms: 1000,
        policy_json: String::new(),
    };
    match runtime().open(&peer_less).unwrap() {
        Err(ProvisioningError::InvalidConfig(m)) => assert!(m.contains("http")),
        Ok(_) => panic!("opened"),
        Err(other) => panic!("{other:?}"),
    }
    let bad_policy = host_example::ConnectorSettings {
        base_url: "https://example.com".into(),
        policy_json:
            r#"{"mapping": [{"target": "userName", "source": "name", "transform": ["shout"]}]}"#
                .into(),
        ..peer_less
    };
    match runtime().open(&bad_policy).unwrap() {
        Err(ProvisioningError::InvalidConfig(m)) => assert!(m.contains("shout"), "{m}"),
        Ok(_) => panic!("opened"),
        Err(other) => panic!("{other:?}"),
    }
}

fn create_and_read_back(peer: &Peer) {
    let mut session = open(&settings(peer, ""));
    let user = drupal_user("101", "alice", "Alice", "Liddell");
    let outcome = provision(&mut session, &user, UserEvent::Created, None)
        .unwrap_or_else(|e| panic!("{}: {}", peer.name, host_example::describe_error(&e)));
    assert_eq!(outcome.action, Action::Created);
    let link = outcome.link.expect("a link");
    let (status, read) = get_json(
        &peer.url(&format!("/Users/{}", link.remote_id)),
        &peer.token,
    )
    .expect("GET works");
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["userName"], "alice");
    assert_eq!(read["name"]["givenName"], "Alice");
    assert_eq!(read["name"]["familyName"], "Liddell");
    assert_eq!(read["displayName"], "Alice Liddell");
    assert_eq!(read["externalId"], "101");
    assert_eq!(read["active"], true);
    assert_eq!(read["emails"][0]["value"], "alice@example.com");
    assert_eq!(read["emails"][0]["type"], "work");

    // The component's own read agrees.
    let json = session
        .get_user(&link.remote_id)
        .unwrap()
        .unwrap()
        .expect("found");
    let via_component: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(via_component["id"], read["id"]);
}

#[test]
fn created_user_reads_back_from_scim2_server() {
    create_and_read_back(&peers::scim2_server().expect("scim2-server starts"));
}

#[test]
fn created_user_reads_back_from_scimmy() {
    create_and_read_back(&peers::scimmy().expect("SCIMMY app starts"));
}
