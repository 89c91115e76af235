//! PATCH apply: input is a resource JSON line, then a PatchOp request body. Either a
//! malformed line falls back to a sample user; applying never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::scim::patch::PatchRequest;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (first, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let mut resource = match serde_json::from_slice::<Value>(first) {
        Ok(v @ Value::Object(_)) => v,
        _ => scim_provisioner::fuzz::sample_user(),
    };
    let Ok(request) = serde_json::from_slice::<PatchRequest>(rest) else {
        return;
    };
    let _ = request.apply_to(&mut resource);
});
