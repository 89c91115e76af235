//! The server role's `handle` over the core's MemoryDirectory, seeded with one user and one
//! group. Input lines: method, path, query, headers (`name: value` joined by `\r`), body.
//! Every request gets an answer with a status; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::server::{MemoryDirectory, ScimServer, ServerConfig, ServerRequest};

const TOKEN: &str = "fuzz-token";

fn request(method: &str, path: &str, body: &str) -> ServerRequest {
    ServerRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: vec![
            ("Authorization".into(), format!("Bearer {TOKEN}")),
            ("Content-Type".into(), "application/scim+json".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let server = ScimServer::new(
        MemoryDirectory::with_clock(|| 1_700_000_000),
        ServerConfig::new("https://cms.example/scim/v2/", TOKEN),
    );
    let user = server.handle(&request(
        "POST",
        "/Users",
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","externalId":"b1","emails":[{"value":"b@example.com","type":"work","primary":true}]}"#,
    ));
    assert_eq!(user.status, 201);
    let _ = server.handle(&request(
        "POST",
        "/Groups",
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Tour Guides"}"#,
    ));

    let mut lines = data.splitn(5, |&b| b == b'\n');
    let mut next = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (method, path, query, headers) = (next(), next(), next(), next());
    let body = lines.next().unwrap_or_default().to_vec();
    let mut all_headers = vec![("Authorization".to_owned(), format!("Bearer {TOKEN}"))];
    all_headers.extend(headers.split('\r').filter(|h| !h.is_empty()).map(|h| {
        let (name, value) = h.split_once(':').unwrap_or((h, ""));
        (name.to_owned(), value.trim().to_owned())
    }));
    let response = server.handle(&ServerRequest {
        method,
        path,
        query,
        headers: all_headers,
        body,
    });
    assert!((100..600).contains(&response.status), "{}", response.status);
});
