//! What the end-to-end tests' sample CMS sites share: a fresh directory of their own, and
//! the sample CMS's user.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use host_example::clock::now_ms;
use host_example::store::UserRecord;
use serde_json::{Map, json};

/// A new, empty directory under the system's temporary directory, named after `what`,
/// this process, a counter and the clock, so parallel tests and runs never share one.
pub fn temp_dir(what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "scim-{what}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        now_ms()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A Drupal-style user of the sample CMS, an editor: first name the upper-cased login
/// name, last name "Tester", mail `{name}@example.com`.
pub fn editor(name: &str) -> UserRecord {
    let mut fields = Map::new();
    fields.insert("field_first_name".into(), json!(name.to_uppercase()));
    fields.insert("field_last_name".into(), json!("Tester"));
    fields.insert("roles".into(), json!(["editor"]));
    UserRecord {
        id: String::new(),
        name: name.to_string(),
        mail: format!("{name}@example.com"),
        fields,
        active: true,
    }
}
