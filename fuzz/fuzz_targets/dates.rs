//! Retry-After (delay-seconds or IMF-fixdate), the CMS date forms of the `date` transform,
//! and the calendar arithmetic under them: any input is a date or not, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::client::response::parse_retry_after;
use scim_provisioner::time;

fuzz_target!(|data: &[u8]| {
    let mut numbers = [0i64; 3];
    for (n, chunk) in numbers.iter_mut().zip(data.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *n = i64::from_le_bytes(bytes);
    }
    let [a, b, c] = numbers;
    let _ = time::days_from_civil(a, b, c);
    let _ = time::civil_from_days(a);
    let _ = time::rfc3339(b);
    let text = String::from_utf8_lossy(data);
    let _ = parse_retry_after(&text, a as u64);
    let _ = parse_retry_after(&text, 0);
    let _ = scim_provisioner::fuzz::cms_date(&text, f64::from_bits(c as u64));
});
