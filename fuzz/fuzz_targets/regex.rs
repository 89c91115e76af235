//! The `regex_replace` engine: input is pattern, text and replacement separated by NUL. Any
//! pattern compiles or is refused; a search ends within its step budget.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let pattern = parts.next().unwrap_or_default();
    let subject = parts.next().unwrap_or_default();
    let replacement = parts.next().unwrap_or_default();
    let _ = scim_provisioner::fuzz::regex(pattern, subject, replacement);
});
