//! Adaptive rate control (issue 31, part 2) end to end: a first sync against the quirky
//! server behind a token bucket (`--rate-limit`) finishes with every user delivered, each
//! read back over plain HTTP, and the pace the host learned is remembered in the stored
//! dialect for the next run.
//!
//! CI runs 400 users against 30 requests a second (about 15 s: a limit low enough that a
//! loaded machine still meets it); the `#[ignore]`d test runs issue 31's 5,000 against 50
//! (about two minutes): `cargo test -p scim-provisioner-tests --test rate_control --
//! --ignored`. Issue 31's goals (under 5% of 429s, at least 90% of the limit, and the same
//! without adaptation) are `bench --rate`'s figures; here the share of 429s must stay under
//! 10% (without adaptation it is above 60%).

use std::collections::HashSet;
use std::time::Duration;

use host_example::config::Threshold;
use host_example::store::Store;
use host_example::sync::{SyncOptions, sync};
use host_example::{ConnectorSettings, Credentials};
use scim_provisioner_tests::component::runtime;
use scim_provisioner_tests::peers::{self, Peer, get_json};
use scim_provisioner_tests::site;

fn options() -> SyncOptions {
    SyncOptions {
        plan_only: false,
        allow_deletes: false,
        threshold: Threshold::Percent(10.0),
        concurrency: 4,
        batch_size: 25,
        max_attempts: 8,
        progress: false,
        full: false,
    }
}

/// Every userName on the peer, paged by plain HTTP; a 429 waits its `Retry-After` (the
/// bucket limits the test's own reads too).
fn remote_user_names(peer: &Peer) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut start = 1;
    loop {
        let url = peer.url(&format!("/Users?startIndex={start}&count=200"));
        let (status, body) = get_json(&url, &peer.token).expect("GET /Users");
        if status == 429 {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        assert_eq!(status, 200, "GET {url}: {body}");
        let page = body["Resources"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return names;
        }
        start += page.len();
        names.extend(
            page.iter()
                .filter_map(|u| u["userName"].as_str().map(String::from)),
        );
    }
}

fn sync_against_a_rate_limit(users: usize, limit: u32) {
    let peer = peers::quirky(&["--rate-limit", &limit.to_string()]).expect("quirky starts");
    let dir = site::temp_dir("rate-control");
    let mut store = Store::open(&dir.join("cms.db")).expect("store");
    let wanted: HashSet<String> = (0..users).map(|i| format!("rate{i:05}")).collect();
    store
        .import_users(wanted.iter().map(|name| Ok(site::editor(name))))
        .expect("users");
    let settings = ConnectorSettings {
        base_url: peer.base_url.clone(),
        credentials: Credentials::Bearer(peer.token.clone()),
        timeout_ms: 30_000,
        policy_json: String::new(),
    };
    let target = host_example::rate::for_target(&settings.base_url);
    let summary = sync(runtime(), &settings, &mut store, &options()).expect("sync");
    let stats = target.stats();
    assert_eq!(summary.failed, 0, "{summary}; {stats:?}");
    assert_eq!(summary.created, users as u64, "{summary}; {stats:?}");
    assert!(stats.throttled > 0, "the limit was met: {stats:?}");
    assert!(
        stats.throttled * 10 < stats.requests,
        "fewer than 10% of the requests refused: {stats:?}"
    );
    assert_eq!(
        remote_user_names(&peer),
        wanted,
        "every user is on the server"
    );
    // The pace learned is kept in the stored dialect, within reach of the limit.
    let document = store
        .meta(&format!("dialect {}", settings.base_url))
        .expect("meta")
        .expect("a stored dialect");
    let remembered: serde_json::Value = serde_json::from_str(&document).expect("JSON");
    let pace = remembered["rate"]["requestsPerSecond"]
        .as_u64()
        .unwrap_or_else(|| panic!("paced: {document}"));
    assert!(
        pace <= u64::from(limit) * 3 / 2 && pace >= u64::from(limit) / 4,
        "{} against {limit}/s",
        remembered["rate"]
    );
    drop(peer);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_first_sync_meets_a_rate_limit_and_delivers_every_user() {
    sync_against_a_rate_limit(400, 30);
}

#[test]
#[ignore = "issue 31's 5,000 users against 50 requests a second: about two minutes"]
fn five_thousand_users_meet_a_rate_limit() {
    sync_against_a_rate_limit(5_000, 50);
}
