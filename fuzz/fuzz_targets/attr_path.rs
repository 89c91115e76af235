//! The attribute path parser (`urn:…:attr[filter].sub`): any text parses or fails cleanly,
//! and a parsed path prints to text that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::scim::path::AttrPath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = AttrPath::parse(text) else {
        return;
    };
    let _ = (path.is_schema_only(), path.is_top_level(), path.name());
    let printed = path.to_string();
    assert!(
        AttrPath::parse(&printed).is_ok(),
        "{text:?} printed as {printed:?}, which does not parse"
    );
});
