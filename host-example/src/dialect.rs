//! Keeping what the component learned about a SCIM server (its "dialect": declared schema,
//! PATCH refused, filters or paging unusable) with the connection, in the store's `meta`
//! table, so each new session starts out knowing instead of learning it again.

use crate::describe::describe_error;
use crate::runtime::Session;
use crate::store::Store;

/// The `meta` key of the dialect of the server at `base_url`: another URL starts afresh.
fn key(base_url: &str) -> String {
    format!("dialect {base_url}")
}

/// Hands the stored dialect of `base_url`, if any, to the session. A document the
/// component refuses (an older format) is dropped, not an error: the session simply learns
/// again, and the warning returned says so for the caller to show.
pub fn load(
    store: &Store,
    session: &mut Session,
    base_url: &str,
) -> anyhow::Result<Option<String>> {
    match stored(store, base_url)? {
        Some(document) => hand_over(session, &document),
        None => Ok(None),
    }
}

/// The stored dialect document of the server at `base_url`, if any.
pub fn stored(store: &Store, base_url: &str) -> anyhow::Result<Option<String>> {
    store.meta(&key(base_url))
}

/// Hands a dialect document to a session. A refused document is only a warning, which is
/// returned (the library prints nothing).
pub fn hand_over(session: &mut Session, document: &str) -> anyhow::Result<Option<String>> {
    Ok(session.import_dialect(document)?.err().map(|e| {
        format!(
            "the stored server dialect was not loaded: {}",
            describe_error(&e)
        )
    }))
}

/// Stores what the session knows now about the server at `base_url`.
pub fn save(store: &mut Store, session: &mut Session, base_url: &str) -> anyhow::Result<()> {
    let document = session.export_dialect()?;
    store.set_meta(&key(base_url), &document)
}

/// The findings of the last connection test in a dialect document, one line each.
pub fn findings(document: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(document)
        .ok()
        .and_then(|v| v.get("findings").and_then(|f| f.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}
