//! The HTTP exchange the server role answers, in WIT-friendly shapes, and the small pieces
//! of HTTP it needs: header lookup, query-string decoding and JSON responses.

use serde_json::Value;

use crate::scim::text;

/// The media type of every SCIM body (RFC 7644 §3.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// A request, as the host received it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerRequest {
    /// The method, any case: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// The path relative to the SCIM base URL, such as `/Users/abc`; percent-encoded as it
    /// arrived. A `?query` left on it is split off.
    pub path: String,
    /// The raw, percent-encoded query string, without the `?`.
    pub query: String,
    /// The headers, in order; names compare case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The body; empty when there is none.
    pub body: Vec<u8>,
}

impl ServerRequest {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The answer for the host to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body; empty for 204 and 304.
    pub body: Vec<u8>,
}

impl ServerResponse {
    /// The first header of that name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON, or `Value::Null` when it is empty or not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A response with no body.
    pub(crate) fn empty(status: u16) -> ServerResponse {
        ServerResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response with a SCIM JSON body.
    pub(crate) fn json_body(status: u16, body: &Value) -> ServerResponse {
        let body = text::json(body).into_bytes();
        ServerResponse {
            status,
            headers: vec![("Content-Type".into(), SCIM_CONTENT_TYPE.into())],
            body,
        }
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

pub(crate) use crate::ports::header;

pub(crate) use crate::scim::uri::percent_decode;

/// The decoded parameters of a query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Splits and decodes `a=1&b=2`. Empty pairs are skipped; a name without `=` has an
    /// empty value.
    pub(crate) fn parse(raw: &str) -> QueryParams {
        let raw = raw.strip_prefix('?').unwrap_or(raw);
        QueryParams(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(name, true), percent_decode(value, true))
                })
                .collect(),
        )
    }

    /// The first value of the parameter, its name compared case-insensitively (clients
    /// differ on `startIndex` versus `startindex`).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("%", true), "%");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(percent_decode("%C3%A9%FF", true), "é\u{fffd}");
        let q =
            QueryParams::parse("filter=userName%20eq%20%22bjensen%22&StartIndex=2&&count&x=a=b");
        assert_eq!(q.get("filter"), Some("userName eq \"bjensen\""));
        assert_eq!(q.get("startIndex"), Some("2"));
        assert_eq!(q.get("count"), Some(""));
        assert_eq!(q.get("x"), Some("a=b"));
        assert_eq!(q.get("missing"), None);
    }
}
