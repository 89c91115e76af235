//! Policy and mapping compilation: any policy JSON compiles or is refused cleanly; a
//! compiled mapping maps a user with fields of every kind and reads its output back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_provisioner::mapping::MapMode;
use scim_provisioner::policy::Policy;
use scim_provisioner::user::{CmsUser, FieldValue};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    let user = CmsUser {
        id: "42".into(),
        fields: vec![
            ("name".into(), FieldValue::Text("ada".into())),
            ("mail".into(), FieldValue::Text("ada@example.com".into())),
            ("x".into(), FieldValue::Text("B-0042 x".into())),
            ("created".into(), FieldValue::Number(1_700_000_000.5)),
            ("birthday".into(), FieldValue::Text("2024-02-29 13:04:05".into())),
            ("status".into(), FieldValue::Boolean(true)),
            ("flag".into(), FieldValue::Text("yes".into())),
            ("roles".into(), FieldValue::TextList(vec!["editor".into(), "admin".into()])),
            ("nothing".into(), FieldValue::Null),
        ],
        active: true,
    };
    let _ = policy.mapping.in_scope(&user);
    for mode in [MapMode::Create, MapMode::Update] {
        if let Ok(resource) = policy.mapping.map(&user, mode) {
            let _ = policy.mapping.reverse(&resource);
            let _ = policy.mapping.reverse_active(&resource);
        }
    }
});
