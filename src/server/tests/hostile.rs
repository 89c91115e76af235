//! Hostile input: random and adversarial requests never panic and always get a SCIM answer.

use serde_json::{Value, json};

use super::{call, create_group, create_user, request, server};
use crate::scim::message::ERROR_SCHEMA;
use crate::server::{ScimServer, ServerRequest, ServerResponse};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Text built from fragments that mean something to SCIM, mixed with noise.
    fn scimish(&mut self, parts: usize) -> String {
        const FRAGMENTS: [&str; 24] = [
            "userName",
            " eq ",
            "\"",
            "[",
            "]",
            "(",
            ")",
            " and ",
            " or ",
            "not ",
            "pr",
            "%",
            "%2",
            "%22",
            "+",
            ".",
            ":",
            "emails",
            "value",
            "bulkId:",
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "é",
            "\\",
            ",",
        ];
        let mut s = String::new();
        for _ in 0..self.below(parts + 1) {
            s.push_str(FRAGMENTS[self.below(FRAGMENTS.len())]);
        }
        s
    }
}

/// What every answer must be: a known status, and a SCIM error body for every failure.
fn check(req: &ServerRequest, r: &ServerResponse) {
    assert!((200..600).contains(&r.status), "{req:?}");
    if r.status >= 400 {
        let body = r.json();
        assert_eq!(body["schemas"], json!([ERROR_SCHEMA]), "{req:?} -> {body}");
        assert_eq!(body["status"], json!(r.status.to_string()));
    }
    if !r.body.is_empty() {
        assert_eq!(r.header("Content-Type"), Some("application/scim+json"));
        assert_ne!(r.json(), Value::Null, "{req:?}");
    } else {
        assert!(matches!(r.status, 204 | 304), "{req:?}");
    }
}

fn fire(s: &ScimServer<crate::server::MemoryDirectory>, req: ServerRequest) {
    let r = s.handle(&req);
    check(&req, &r);
}

#[test]
fn random_requests_never_panic() {
    let s = server();
    let user = create_user(
        &s,
        "victim",
        json!({"emails": [{"type": "work", "value": "v@x"}]}),
    );
    let group = create_group(&s, "G", &[&user]);
    let paths = [
        "/Users".to_string(),
        format!("/Users/{user}"),
        "/Groups".to_string(),
        format!("/Groups/{group}"),
        "/Bulk".to_string(),
        "/.search".to_string(),
        "/Users/.search".to_string(),
        "/Schemas".to_string(),
        "/ResourceTypes/User".to_string(),
        "/ServiceProviderConfig".to_string(),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for round in 0..3000 {
        let mut req = request(
            rng.pick(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", ""]),
            &paths[rng.below(paths.len())],
            None,
        );
        match round % 6 {
            0 => req.body = rng.bytes(200),
            1 => req.path = String::from_utf8_lossy(&rng.bytes(40)).into_owned(),
            2 => {
                req.query = format!(
                    "filter={}&attributes={}&sortBy={}",
                    rng.scimish(12),
                    rng.scimish(4),
                    rng.scimish(3)
                )
            }
            3 => req.query = String::from_utf8_lossy(&rng.bytes(80)).into_owned(),
            4 => {
                let value = rng.scimish(6);
                let path = rng.scimish(5);
                let op = rng.pick(&["add", "Replace", "remove", "x"]);
                req.body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": op, "path": path, "value": value}]})
                .to_string()
                .into_bytes();
            }
            _ => {
                req.headers.push((
                    rng.pick(&["If-Match", "If-None-Match", "Authorization"])
                        .to_string(),
                    String::from_utf8_lossy(&rng.bytes(20)).into_owned(),
                ));
                req.body = json!({"schemas": [rng.scimish(2)], "userName": rng.scimish(3),
                    "Operations": [{"method": "POST", "path": rng.scimish(3), "data": {"x": rng.scimish(3)}}]})
                    .to_string()
                    .into_bytes();
            }
        }
        fire(&s, req);
    }
}

#[test]
fn adversarial_inputs() {
    let s = server();
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = "{\"a\":".repeat(50_000);
    let deep_filter = format!("{}userName pr{}", "(".repeat(5_000), ")".repeat(5_000));
    let many_names = vec!["userName"; 10_000].join(",");
    let cases: Vec<ServerRequest> = vec![
        ServerRequest {
            body: deep_json.clone().into_bytes(),
            ..request("POST", "/Users", None)
        },
        ServerRequest {
            body: deep_object.into_bytes(),
            ..request("PATCH", "/Users/x", None)
        },
        ServerRequest {
            body: deep_json.into_bytes(),
            ..request("POST", "/Bulk", None)
        },
        request("GET", &format!("/Users?filter={deep_filter}"), None),
        request("GET", &format!("/Users?attributes={many_names}"), None),
        request(
            "GET",
            "/Users?count=18446744073709551616&startIndex=-18446744073709551616",
            None,
        ),
        request("GET", &format!("/Users/{}", "%".repeat(10_000)), None),
        request("GET", &"/".repeat(10_000), None),
        request("GET", "/Users/%ff%fe", None),
        request(&"X".repeat(10_000), "/Users", None),
        ServerRequest {
            body: vec![0xff, 0xfe, 0x00],
            ..request("POST", "/Users", None)
        },
        request(
            "POST",
            "/Users/.search",
            Some(&json!({"count": 1e308, "startIndex": -1e308})),
        ),
        request(
            "POST",
            "/Bulk",
            Some(
                &json!({"Operations": [{"method": "POST", "path": "/Users/bulkId:", "data": null}]}),
            ),
        ),
        request(
            "POST",
            "/Bulk",
            Some(&json!({"failOnErrors": -1, "Operations": []})),
        ),
        ServerRequest {
            headers: vec![("Authorization".into(), "Bearer \u{0}".into())],
            ..request("GET", "/Users", None)
        },
    ];
    for req in cases {
        fire(&s, req);
    }
    // Nothing above changed anything.
    let list = call(&s, "GET", "/Users", None).json();
    assert_eq!(list["totalResults"], 0);
}
