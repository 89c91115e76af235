//! Keeping what the component learned about a SCIM server (its "dialect": declared schema,
//! PATCH refused, filters or paging unusable) with the connection, in the store's `meta`
//! table, so each new session starts out knowing instead of learning it again.

use crate::runtime::{Session, describe_error};
use crate::store::Store;

/// The `meta` key of the dialect of the server at `base_url`: another URL starts afresh.
fn key(base_url: &str) -> String {
    format!("dialect {base_url}")
}

/// Hands the stored dialect of `base_url`, if any, to the session. A document the
/// component refuses (an older format) is dropped with a warning, not an error: the
/// session simply learns again.
pub fn load(store: &Store, session: &mut Session, base_url: &str) -> anyhow::Result<()> {
    if let Some(document) = stored(store, base_url)? {
        hand_over(session, &document)?;
    }
    Ok(())
}

/// The stored dialect document of the server at `base_url`, if any.
pub fn stored(store: &Store, base_url: &str) -> anyhow::Result<Option<String>> {
    store.meta(&key(base_url))
}

/// Hands a dialect document to a session; a refused document only warns.
pub fn hand_over(session: &mut Session, document: &str) -> anyhow::Result<()> {
    if let Err(e) = session.import_dialect(document)? {
        eprintln!(
            "warning: the stored server dialect was not loaded: {}",
            describe_error(&e)
        );
    }
    Ok(())
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
