//! Bulk response parsing (RFC 7644 §3.7): any JSON body is read or refused cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::client::bulk_wire;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(results) = bulk_wire::parse_response(&body) {
        for result in &results {
            let _ = result.location_id();
        }
    }
});
