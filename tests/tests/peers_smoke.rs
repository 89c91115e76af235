//! Proves the peer harness: each peer installs, starts, stores a user, checks its token,
//! restarts on the same port, and several peers run side by side.

use anyhow::{Context, Result, ensure};
use scim_provisioner_tests::peers::{self, Peer, get_json, send_json};
use serde_json::json;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// POSTs a user, GETs it back by id and returns the id.
fn create_and_read_user(peer: &Peer, user_name: &str) -> Result<String> {
    let user = json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true});
    let (status, created) = send_json("POST", &peer.url("/Users"), &peer.token, Some(&user))?;
    ensure!(
        status == 201,
        "{}: POST /Users answered {status}: {created}",
        peer.name
    );
    let id = created["id"]
        .as_str()
        .with_context(|| format!("{}: no id in {created}", peer.name))?
        .to_owned();

    let (status, read) = get_json(&peer.url(&format!("/Users/{id}")), &peer.token)?;
    ensure!(
        status == 200,
        "{}: GET /Users/{id} answered {status}: {read}",
        peer.name
    );
    ensure!(
        read["id"] == id.as_str(),
        "{}: wrong id in {read}",
        peer.name
    );
    ensure!(
        read["userName"] == user_name,
        "{}: wrong userName in {read}",
        peer.name
    );
    Ok(id)
}

fn check_peer(peer: &Peer) -> Result<()> {
    create_and_read_user(peer, "smoke.alice")?;

    let (status, body) = get_json(&peer.url("/Users"), "not-the-token")?;
    ensure!(
        status == 401,
        "{}: a wrong token got {status}: {body}",
        peer.name
    );
    let (status, body) = get_json(&peer.url("/Users"), &peer.token)?;
    ensure!(
        status == 200,
        "{}: the right token got {status}: {body}",
        peer.name
    );
    ensure!(
        body["totalResults"] == 1,
        "{}: expected one user in {body}",
        peer.name
    );
    Ok(())
}

#[test]
fn scim2_server_starts_stores_and_checks_the_token() -> Result<()> {
    let peer = peers::scim2_server()?;
    assert!(peer.base_url.ends_with("/v2"), "{}", peer.base_url);
    check_peer(&peer)
}

#[test]
fn scimmy_starts_stores_and_checks_the_token() -> Result<()> {
    let peer = peers::scimmy()?;
    assert!(peer.base_url.ends_with("/scim/v2"), "{}", peer.base_url);
    check_peer(&peer)?;

    // What the app adds to the library: 409 on a duplicate userName, 404 on unknown ids.
    let dup = json!({"schemas": [USER_SCHEMA], "userName": "SMOKE.ALICE"});
    let (status, body) = send_json("POST", &peer.url("/Users"), &peer.token, Some(&dup))?;
    ensure!(
        status == 409 && body["scimType"] == "uniqueness",
        "duplicate got {status}: {body}"
    );
    let (status, body) = get_json(&peer.url("/Users/no-such-id"), &peer.token)?;
    ensure!(status == 404, "unknown id got {status}: {body}");
    Ok(())
}

#[test]
fn peers_run_side_by_side() -> Result<()> {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(peers::scim2_server);
        let b = s.spawn(peers::scim2_server);
        (a.join(), b.join())
    });
    let a = a.map_err(|_| anyhow::anyhow!("thread panicked"))??;
    let b = b.map_err(|_| anyhow::anyhow!("thread panicked"))??;
    let c = peers::scimmy()?;
    ensure!(
        a.port != b.port && a.port != c.port && b.port != c.port,
        "ports collide"
    );
    ensure!(a.token != b.token, "tokens repeat");

    create_and_read_user(&a, "side.a")?;
    create_and_read_user(&c, "side.c")?;
    // Each peer has its own store.
    let (status, list) = get_json(&b.url("/Users"), &b.token)?;
    ensure!(
        status == 200 && list["totalResults"] == 0,
        "b is not empty: {status} {list}"
    );
    // One token does not open another peer.
    let (status, _) = get_json(&a.url("/Users"), &b.token)?;
    ensure!(status == 401, "a accepted b's token: {status}");
    Ok(())
}

#[test]
fn restart_keeps_port_and_token_and_loses_data() -> Result<()> {
    for mut peer in [peers::scim2_server()?, peers::scimmy()?] {
        let id = create_and_read_user(&peer, "restart.me")?;
        let (port, token, base) = (peer.port, peer.token.clone(), peer.base_url.clone());

        peer.stop();
        ensure!(!peer.is_running(), "{} still runs after stop", peer.name);
        ensure!(
            get_json(&peer.url("/Users"), &peer.token).is_err(),
            "{} still answers",
            peer.name
        );

        peer.start_again()?;
        ensure!(
            peer.port == port && peer.token == token && peer.base_url == base,
            "address changed"
        );
        let (status, body) = get_json(&peer.url(&format!("/Users/{id}")), &peer.token)?;
        ensure!(
            status == 404,
            "{}: user survived the restart: {status} {body}",
            peer.name
        );
        create_and_read_user(&peer, "restart.me")?;
    }
    Ok(())
}
