//! `scimp_select`: a host's directory filters, sorts and pages with the core's own
//! [`select`](scim_provisioner::server::select::select), so the PHP directory and the
//! component never disagree on what a filter means.

use serde_json::{Value, json};

use scim_provisioner::ports::DirectoryError;
use scim_provisioner::server::select::{query_from_text, select};

/// Answers one select request (see `scim_bridge.h`).
pub fn answer(request: &Value) -> Value {
    match run(request) {
        Ok(v) => v,
        Err((kind, message)) => json!({"error": kind, "message": message}),
    }
}

fn run(request: &Value) -> Result<Value, (&'static str, String)> {
    let bad = |m: &str| ("invalid-request", m.to_string());
    let filter = match request.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.as_str()),
        Some(_) => return Err(bad("\"filter\" must be a string or null")),
    };
    let sort_by = match request.get("sort-by") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("\"sort-by\" must be a string or null")),
    };
    let number = |key: &str, default: u32| -> Result<u32, (&'static str, String)> {
        match request.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
                .ok_or_else(|| bad(&format!("\"{key}\" must be a whole number"))),
        }
    };
    let query = query_from_text(
        filter,
        number("start-index", 1)?,
        number("count", u32::MAX)?,
        sort_by,
        request
            .get("sort-descending")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    )
    .map_err(|e| match e {
        DirectoryError::InvalidFilter(m) => ("invalid-filter", m),
        other => ("invalid-request", other.to_string()),
    })?;
    let resources = request
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("\"resources\" must be an array of SCIM objects"))?;
    let selection = select(resources, &query).map_err(|e| ("invalid-request", format!("{e:?}")))?;
    Ok(json!({
        "total-results": selection.total_results,
        "indices": selection.indices,
    }))
}
