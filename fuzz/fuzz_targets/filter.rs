//! The SCIM filter parser and evaluator: any text parses or fails cleanly; a parsed filter
//! prints to text that parses again, and evaluates against a resource without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::scim::filter::{Filter, matches};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = Filter::parse(text) else {
        return;
    };
    let printed = filter.to_string();
    let reparsed = Filter::parse(&printed);
    assert!(reparsed.is_ok(), "{text:?} printed as {printed:?}, which does not parse");
    let user = scim_provisioner::fuzz::sample_user();
    let _ = matches(&filter, &user);
});
