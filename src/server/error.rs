//! SCIM error responses (RFC 7644 §3.12): every failure the server role reports is one of
//! these, so a client never sees a non-SCIM error body.

use serde_json::{Value, json};

use crate::ports::DirectoryError;
use crate::scim::filter::FilterError;
use crate::scim::message::ERROR_SCHEMA;
use crate::scim::patch::PatchError;
use crate::server::http::ServerResponse;

/// A failure to answer with a SCIM error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScimError {
    /// The HTTP status.
    pub status: u16,
    /// The `scimType`, for the 400 and 409 kinds RFC 7644 Table 9 defines.
    pub scim_type: Option<&'static str>,
    /// A human-readable explanation; never holds a secret.
    pub detail: String,
    /// Extra headers, such as `WWW-Authenticate` or `Allow`.
    pub headers: Vec<(String, String)>,
    /// What the directory said, for the host's log only: its text may hold SQL, file paths
    /// or exception messages, so the client gets `detail`, a plain sentence, and a
    /// reference that finds this text in the log ([`ScimError::reported`]).
    pub internal: Option<String>,
}

impl ScimError {
    /// An error with a status and a detail.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
            headers: Vec::new(),
            internal: None,
        }
    }

    /// An error whose cause is for the log only: the client gets `detail`.
    fn hiding(status: u16, detail: &str, internal: String) -> Self {
        ScimError {
            internal: Some(internal),
            ..ScimError::new(status, detail)
        }
    }

    /// The error as the client gets it, with the text to log when it hides one: the detail
    /// gains a reference (`internal error; reference 1a2b3c4d5e6f`), and the log line names
    /// the same reference beside the hidden text, so an operator finds one from the other.
    pub fn reported(mut self) -> (Self, Option<String>) {
        let Some(internal) = self.internal.take() else {
            return (self, None);
        };
        let reference = new_reference(&internal);
        self.detail = format!("{}; reference {reference}", self.detail);
        let line = format!(
            "server: answered {} (reference {reference}): {internal}",
            self.status
        );
        (self, Some(line))
    }

    /// A 400 with a `scimType`.
    pub fn bad_request(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError {
            scim_type: Some(scim_type),
            ..ScimError::new(400, detail)
        }
    }

    /// 400 `invalidSyntax`.
    pub fn syntax(detail: impl Into<String>) -> Self {
        ScimError::bad_request("invalidSyntax", detail)
    }

    /// 400 `invalidValue`.
    pub fn value(detail: impl Into<String>) -> Self {
        ScimError::bad_request("invalidValue", detail)
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(what: &str) -> Self {
        ScimError::new(404, format!("{what} not found"))
    }

    /// The same error with another status.
    fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The SCIM error body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = Value::String(t.to_string());
        }
        body
    }

    /// The response: the body with the SCIM content type, and the extra headers.
    pub fn response(&self) -> ServerResponse {
        let mut r = ServerResponse::json_body(self.status, &self.body());
        r.headers.extend(self.headers.iter().cloned());
        r
    }
}

impl From<FilterError> for ScimError {
    fn from(e: FilterError) -> Self {
        ScimError::bad_request(e.scim_type(), e.to_string())
    }
}

impl From<PatchError> for ScimError {
    fn from(e: PatchError) -> Self {
        let status = e.status();
        ScimError::bad_request(e.scim_type(), e.message).with_status(status)
    }
}

/// A reference for one reported error: 12 hex digits from the clock, a counter and the
/// text, so the references of instances answering side by side do not repeat.
fn new_reference(text: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // FNV-1a, 64 bits: not secret, only distinct.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = nanos
        .to_le_bytes()
        .into_iter()
        .chain(count.to_le_bytes())
        .chain(text.bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash >> 16)
}

impl From<DirectoryError> for ScimError {
    /// The directory's own text (its database's errors, say) goes to the log only; the
    /// client gets a sentence of ours (issue 28).
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound => ScimError::not_found("resource"),
            DirectoryError::Conflict(m) => ScimError {
                scim_type: Some("uniqueness"),
                ..ScimError::hiding(
                    409,
                    "a unique attribute's value (userName, or a Group's displayName) is \
                     already taken by another resource",
                    format!("directory conflict: {m}"),
                )
            },
            DirectoryError::VersionMismatch => ScimError::new(
                412,
                "the resource has changed since the version given in If-Match",
            ),
            DirectoryError::InvalidFilter(m) => ScimError::bad_request("invalidFilter", m),
            DirectoryError::Unavailable(m) => ScimError::hiding(
                503,
                "the directory is unavailable; try again later",
                format!("directory unavailable: {m}"),
            ),
            DirectoryError::Other(m) => {
                ScimError::hiding(500, "internal error", format!("directory error: {m}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let e = ScimError::from(DirectoryError::Conflict("userName taken".into())).reported();
        let body = e.0.body();
        assert_eq!(body["status"], "409");
        assert_eq!(body["scimType"], "uniqueness");
        assert!(!body["detail"].as_str().unwrap().contains("userName taken"));
        let r = ScimError::new(401, "no")
            .with_header("WWW-Authenticate", "Bearer")
            .response();
        assert_eq!(r.status, 401);
        assert_eq!(r.header("content-type"), Some("application/scim+json"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.json().get("scimType").is_none());
    }

    /// Issue 28, finding 5: a directory's own text (SQL, paths, exception messages) never
    /// reaches the client; the log gets it with the reference the answer carries.
    #[test]
    fn directory_internals_go_to_the_log_under_a_reference() {
        let leaks = "SQLSTATE[HY000]: no such table: scim_resources in /srv/site/Dir.php:42";
        for e in [
            DirectoryError::Other(leaks.into()),
            DirectoryError::Unavailable(leaks.into()),
            DirectoryError::Conflict(leaks.into()),
        ] {
            let (error, line) = ScimError::from(e).reported();
            let detail = error.body()["detail"].as_str().unwrap().to_string();
            assert!(
                !detail.contains("SQLSTATE") && !detail.contains("/srv"),
                "{detail}"
            );
            let reference = detail.rsplit("reference ").next().unwrap();
            assert_eq!(reference.len(), 12, "{detail}");
            let line = line.expect("the hidden text is logged");
            assert!(line.contains(reference) && line.contains(leaks), "{line}");
        }
        let (a, _) = ScimError::from(DirectoryError::Other("x".into())).reported();
        let (b, _) = ScimError::from(DirectoryError::Other("x".into())).reported();
        assert_ne!(a.detail, b.detail, "each report has its own reference");
        let (plain, line) = ScimError::new(404, "nope").reported();
        assert_eq!((plain.detail.as_str(), line), ("nope", None));
    }
}
