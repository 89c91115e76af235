//! The client role reading answers: status (2 bytes), headers up to a blank line
//! (`name: value` per line), then the body. Success, error, ListResponse, resource and
//! Retry-After readers all return without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::client::{capabilities, resource, response};
use scim_provisioner::ports::HttpResponse;

fuzz_target!(|data: &[u8]| {
    let [hi, lo, rest @ ..] = data else {
        return;
    };
    let status = u16::from_be_bytes([*hi, *lo]) % 1000;
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or(("", &text));
    let headers = head
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            (name.to_owned(), value.trim().to_owned())
        })
        .collect();
    let resp = HttpResponse {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    };
    let _ = response::is_json_content_type(&resp);
    let _ = response::retry_class(&resp, 1_700_000_000);
    let error = response::error_from_response(&resp, 1_700_000_000);
    let _ = (error.to_string(), error.retry_class());
    let _ = scim_provisioner::fuzz::list_response(&resp);
    if let Ok(Some(value)) = response::json_body(&resp) {
        let _ = resource::id_of(&value);
        let _ = resource::version_of(&resp, Some(&value));
        let _ = resource::location_of(&resp, Some(&value));
        let _ = capabilities::ServerCapabilities::from_service_provider_config(&value);
    }
});
