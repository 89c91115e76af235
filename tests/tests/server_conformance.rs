//! The server role under the component runtime: `host-example serve`'s engine (the
//! component over a SQLite directory) checked by third-party conformance suites, and the
//! host's client provisioning into the host's server.

use std::process::Command;

use host_example::logging::{Level, LogSink};
use host_example::serve;
use scim_provisioner_tests::component::runtime;
use scim_provisioner_tests::peers::{get_json, peers_dir};

struct Served {
    server: serve::RunningServer,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn serve(name: &str) -> Served {
    let dir = std::env::temp_dir().join(format!("scim-conformance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let token = serve::generate_token();
    let server = serve::start(
        runtime(),
        &dir.join("directory.db"),
        "127.0.0.1:0",
        &token,
        "",
        LogSink::stderr(Level::Error),
    )
    .expect("serve starts");
    Served {
        server,
        _dir: tempdir::Dir(dir),
    }
}

fn tool(name: &str) -> std::path::PathBuf {
    let path = peers_dir().join("venv").join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers",
        path.display()
    );
    path
}

/// scim2-tester (through scim2-cli) passes every check.
#[test]
fn scim2_tester_passes_every_check() {
    let s = serve("scim2-tester");
    let out = Command::new(tool("scim2"))
        .args(["--url", &s.server.base_url, "test"])
        .env(
            "SCIM_CLI_HEADERS",
            format!("Authorization: Bearer {}", s.server.token),
        )
        .output()
        .expect("scim2 runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let successes = text.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("FAIL") || l.starts_with("CRITICAL"))
        .collect();
    assert!(out.status.success(), "scim2 test failed:\n{text}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(successes >= 100, "only {successes} checks ran:\n{text}");
    println!("scim2-tester: {successes} checks passed");
}

/// scim-sanity passes (its Agent resource types are skipped: we serve Users and Groups).
#[test]
fn scim_sanity_passes() {
    let s = serve("scim-sanity");
    let out = Command::new(tool("scim-sanity"))
        .args([
            "probe",
            &s.server.base_url,
            "--token",
            &s.server.token,
            "--i-accept-side-effects",
        ])
        .output()
        .expect("scim-sanity runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scim-sanity failed:\n{text}");
    assert!(!text.contains("[FAIL]"), "{text}");
    assert!(text.contains("All tests passed"), "{text}");
}

/// Without the token nothing but discovery is served: 401 with WWW-Authenticate and a
/// SCIM error body.
#[test]
fn requests_without_the_token_get_401() {
    let s = serve("auth");
    let (status, body) = get_json(&format!("{}/Users", s.server.base_url), "wrong").expect("GET");
    assert_eq!(status, 401);
    assert_eq!(body["status"], "401");
    let (status, _) = get_json(
        &format!("{}/ServiceProviderConfig", s.server.base_url),
        "wrong",
    )
    .expect("GET");
    assert_eq!(status, 200, "discovery answers without authentication");
}

/// The host's client (the component) provisions into the host's server (the component):
/// the whole demo, every result proven by reading the server back.
#[test]
fn client_provisions_into_server_end_to_end() {
    assert!(host_example::demo::run(runtime()).expect("demo runs"));
}

/// An identity provider's user becomes a normal CMS user through the reverse mapping;
/// `active=false` blocks it, and a DELETE removes it.
#[test]
fn identity_provider_users_appear_in_the_cms() {
    use scim_provisioner_tests::peers::send_json;
    let s = serve("into-cms");
    let db = s._dir.0.join("directory.db");
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "okta.user",
        "name": {"givenName": "Olga", "familyName": "Kta"},
        "emails": [{"type": "work", "value": "olga@idp.example", "primary": true}],
        "active": true
    });
    let users = format!("{}/Users", s.server.base_url);
    let (status, created) = send_json("POST", &users, &s.server.token, Some(&user)).expect("POST");
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let cms = host_example::store::Store::open(&db).expect("store");
    let u = cms.user(&id).expect("read").expect("a CMS user");
    assert_eq!(u.name, "okta.user");
    assert_eq!(u.mail, "olga@idp.example");
    assert_eq!(u.fields["field_first_name"], "Olga");
    assert_eq!(u.fields["field_last_name"], "Kta");
    assert!(u.active);

    // A login name a CMS user already holds (in any case) is a 409 `uniqueness`, on a
    // create and on a replace, and leaves nothing behind, as on PostgreSQL and MariaDB.
    let mut cms = cms;
    cms.import_users([Ok(host_example::store::UserRecord {
        id: "cms-editor".into(),
        name: "Site.Editor".into(),
        mail: "editor@cms.example".into(),
        fields: serde_json::Map::new(),
        active: true,
    })])
    .expect("a CMS user");
    let mut clash = user.clone();
    clash["userName"] = "site.editor".into();
    let (status, body) = send_json("POST", &users, &s.server.token, Some(&clash)).expect("POST");
    assert_eq!(
        (status, body["scimType"].as_str()),
        (409, Some("uniqueness")),
        "{body}"
    );
    let (status, body) = send_json(
        "PUT",
        &format!("{users}/{id}"),
        &s.server.token,
        Some(&clash),
    )
    .expect("PUT");
    assert_eq!(
        (status, body["scimType"].as_str()),
        (409, Some("uniqueness")),
        "{body}"
    );
    let (_, listed) = send_json("GET", &users, &s.server.token, None).expect("GET");
    assert_eq!(listed["totalResults"], 1, "{listed}");
    assert_eq!(listed["Resources"][0]["userName"], "okta.user", "{listed}");
    assert_eq!(cms.user(&id).unwrap().expect("kept").name, "okta.user");
    assert_eq!(cms.all_users().unwrap().len(), 2);

    // Okta deactivates with a no-path PATCH.
    let patch = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]
    });
    let (status, body) = send_json(
        "PATCH",
        &format!("{users}/{id}"),
        &s.server.token,
        Some(&patch),
    )
    .expect("PATCH");
    assert_eq!(status, 200, "{body}");
    assert!(
        !cms.user(&id).unwrap().expect("still there").active,
        "blocked"
    );

    let (status, _) =
        send_json("DELETE", &format!("{users}/{id}"), &s.server.token, None).expect("DELETE");
    assert_eq!(status, 204);
    assert!(cms.user(&id).unwrap().is_none(), "removed from the CMS");
}
