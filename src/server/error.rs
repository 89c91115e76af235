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
}

impl ScimError {
    /// An error with a status and a detail.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
            headers: Vec::new(),
        }
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

impl From<DirectoryError> for ScimError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound => ScimError::not_found("resource"),
            DirectoryError::Conflict(m) => ScimError {
                scim_type: Some("uniqueness"),
                ..ScimError::new(409, m)
            },
            DirectoryError::VersionMismatch => ScimError::new(
                412,
                "the resource has changed since the version given in If-Match",
            ),
            DirectoryError::InvalidFilter(m) => ScimError::bad_request("invalidFilter", m),
            DirectoryError::Unavailable(m) => {
                ScimError::new(503, format!("the directory is unavailable: {m}"))
            }
            DirectoryError::Other(m) => ScimError::new(500, format!("directory error: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let e = ScimError::from(DirectoryError::Conflict("userName taken".into()));
        assert_eq!(
            e.body(),
            json!({
                "schemas": [ERROR_SCHEMA],
                "status": "409",
                "scimType": "uniqueness",
                "detail": "userName taken"
            })
        );
        let r = ScimError::new(401, "no")
            .with_header("WWW-Authenticate", "Bearer")
            .response();
        assert_eq!(r.status, 401);
        assert_eq!(r.header("content-type"), Some("application/scim+json"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.json().get("scimType").is_none());
    }
}
