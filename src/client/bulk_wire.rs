//! The client role's side of the SCIM Bulk messages (RFC 7644 §3.7), as they go over the
//! wire (the bulk engine that uses them is `client::bulk`): building BulkRequests that
//! respect the server's `maxOperations` and `maxPayloadSize`, and reading BulkResponses,
//! leniently, into one result per operation.

use serde_json::{Map, Value, json};

use crate::scim::attr::get_ci;
use crate::scim::lenient::lenient_u64;
use crate::scim::message::BULK_REQUEST_SCHEMA;
use crate::scim::text;

/// One operation of a BulkRequest.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOperation {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The client's transient id; required for `POST` (RFC 7644 §3.7), and how a POST's
    /// result is found again.
    pub bulk_id: Option<String>,
    /// The resource path relative to the base URL, such as `/Users/2819c223`.
    pub path: String,
    /// The version the change is conditional on (`If-Match`).
    pub version: Option<String>,
    /// The request body, for `POST`, `PUT` and `PATCH`.
    pub data: Option<Value>,
}

impl BulkOperation {
    /// The operation as it goes on the wire.
    pub fn to_json(&self) -> Value {
        let mut op = Map::new();
        op.insert("method".into(), json!(self.method));
        if let Some(id) = &self.bulk_id {
            op.insert("bulkId".into(), json!(id));
        }
        op.insert("path".into(), json!(self.path));
        if let Some(v) = &self.version {
            op.insert("version".into(), json!(v));
        }
        if let Some(d) = &self.data {
            op.insert("data".into(), d.clone());
        }
        Value::Object(op)
    }
}

/// A BulkRequest body holding these operations (already in wire form). It sets no
/// `failOnErrors`: every user's change stands on its own, so one failure must not stop
/// the others.
pub fn request_body(operations: Vec<Value>) -> Value {
    json!({"schemas": [BULK_REQUEST_SCHEMA], "Operations": operations})
}

/// The bytes a BulkRequest takes before its operations are added, plus one comma per
/// operation after the first: see [`chunk`].
fn envelope_len() -> usize {
    text::json(&request_body(Vec::new())).len()
}

/// Splits operations (given by their serialised lengths, in order) into requests of at
/// most `max_operations` operations and `max_payload_size` bytes. Returns the chunks as
/// index lists, and the indexes of operations too large to travel in any bulk request.
pub fn chunk(
    lengths: &[usize],
    max_operations: u32,
    max_payload_size: u64,
) -> (Vec<Vec<usize>>, Vec<usize>) {
    let max_ops = usize::try_from(max_operations).unwrap_or(usize::MAX).max(1);
    let max_bytes = usize::try_from(max_payload_size).unwrap_or(usize::MAX);
    let envelope = envelope_len();
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut too_large = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut size = envelope;
    for (i, &len) in lengths.iter().enumerate() {
        if envelope.saturating_add(len) > max_bytes {
            too_large.push(i);
            continue;
        }
        if !current.is_empty() && (current.len() >= max_ops || size + 1 + len > max_bytes) {
            chunks.push(std::mem::take(&mut current));
            size = envelope;
        }
        size += len + usize::from(!current.is_empty());
        current.push(i);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    (chunks, too_large)
}

/// One operation's result in a BulkResponse.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkResult {
    /// The method, as the server echoed it.
    pub method: Option<String>,
    /// The `bulkId`, as the server echoed it.
    pub bulk_id: Option<String>,
    /// The resource's location (absolute or, from some servers, a path).
    pub location: Option<String>,
    /// The resource's new version.
    pub version: Option<String>,
    /// The HTTP status of the operation.
    pub status: u16,
    /// The body the operation would have had on its own (an error, or a resource).
    pub response: Option<Value>,
}

impl BulkResult {
    /// The last path segment of the location, percent-decoded: the resource's id.
    pub fn location_id(&self) -> Option<String> {
        let location = self.location.as_deref()?;
        let path = location.split(['?', '#']).next().unwrap_or(location);
        let last = path.trim_end_matches('/').rsplit('/').next()?;
        let id = crate::scim::uri::percent_decode(last, false);
        (!crate::scim::uri::is_empty_or_dot_segment(&id)).then_some(id)
    }
}

/// Reads a BulkResponse. The status may be `"201"`, `201` or (as in early drafts)
/// `{"code": "201"}`; names compare case-insensitively. An operation without a readable
/// status is an error, so that nothing is taken as done that was not.
pub fn parse_response(body: &Value) -> Result<Vec<BulkResult>, String> {
    let obj = body
        .as_object()
        .ok_or_else(|| "the BulkResponse is not a JSON object".to_string())?;
    let operations = match get_ci(obj, "Operations") {
        Some(Value::Array(ops)) => ops,
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(_) => return Err("the BulkResponse's Operations is not a list".into()),
    };
    operations
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let o = op
                .as_object()
                .ok_or_else(|| format!("operation {i} of the BulkResponse is not an object"))?;
            let text = |name: &str| get_ci(o, name).and_then(Value::as_str).map(String::from);
            let status = get_ci(o, "status")
                .and_then(|s| match s {
                    Value::Object(code) => get_ci(code, "code").and_then(lenient_u64),
                    other => lenient_u64(other),
                })
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| format!("operation {i} of the BulkResponse has no valid status"))?;
            Ok(BulkResult {
                method: text("method"),
                bulk_id: text("bulkId"),
                location: text("location"),
                version: text("version"),
                status,
                response: get_ci(o, "response").filter(|r| !r.is_null()).cloned(),
            })
        })
        .collect()
}

/// Pairs each sent operation with its result: by `bulkId` where the server echoed it, then
/// by position where the method agrees, then by location. An operation without a result
/// gets `None`: its fate is unknown.
pub fn match_results(sent: &[BulkOperation], results: Vec<BulkResult>) -> Vec<Option<BulkResult>> {
    let mut matched: Vec<Option<BulkResult>> = vec![None; sent.len()];
    let mut rest: Vec<(usize, BulkResult)> = Vec::new();
    for (position, result) in results.into_iter().enumerate() {
        let by_id = result.bulk_id.as_deref().and_then(|id| {
            sent.iter()
                .position(|op| op.bulk_id.as_deref() == Some(id))
                .filter(|&i| matched.get(i).is_some_and(Option::is_none))
        });
        match by_id {
            Some(i) => matched[i] = Some(result),
            None => rest.push((position, result)),
        }
    }
    let same_method = |op: &BulkOperation, r: &BulkResult| {
        r.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(op.method))
    };
    let mut unplaced = Vec::new();
    for (position, result) in rest {
        let fits = sent.get(position).is_some_and(|op| {
            op.bulk_id.is_none() && same_method(op, &result) && matched[position].is_none()
        });
        if fits {
            matched[position] = Some(result);
        } else {
            unplaced.push(result);
        }
    }
    for result in unplaced {
        let Some(location) = result.location.as_deref() else {
            continue;
        };
        let found = sent.iter().enumerate().position(|(i, op)| {
            matched[i].is_none()
                && op.bulk_id.is_none()
                && same_method(op, &result)
                && location.trim_end_matches('/').ends_with(&op.path)
        });
        if let Some(i) = found {
            matched[i] = Some(result);
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::message::BULK_RESPONSE_SCHEMA;

    fn op(method: &'static str, bulk_id: Option<&str>, path: &str) -> BulkOperation {
        BulkOperation {
            method,
            bulk_id: bulk_id.map(String::from),
            path: path.into(),
            version: None,
            data: None,
        }
    }

    #[test]
    fn chunks_respect_operation_and_byte_limits() {
        let envelope = envelope_len();
        // Three operations a chunk.
        let (chunks, big) = chunk(&[10; 7], 3, 1_000_000);
        assert_eq!(chunks, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert!(big.is_empty());
        // Exactly two 10-byte operations and their comma fit.
        let (chunks, _) = chunk(&[10; 5], 100, (envelope + 21) as u64);
        assert_eq!(chunks, vec![vec![0, 1], vec![2, 3], vec![4]]);
        // One byte less and each goes alone.
        let (chunks, _) = chunk(&[10; 2], 100, (envelope + 20) as u64);
        assert_eq!(chunks, vec![vec![0], vec![1]]);
        // Too large for any request: reported, not sent.
        let (chunks, big) = chunk(&[10, 500, 10], 100, (envelope + 100) as u64);
        assert_eq!(chunks, vec![vec![0, 2]]);
        assert_eq!(big, vec![1]);
        // A server that says 0 operations still gets one at a time.
        let (chunks, _) = chunk(&[1, 1], 0, 1_000);
        assert_eq!(chunks, vec![vec![0], vec![1]]);
    }

    #[test]
    fn a_chunk_is_never_larger_than_the_limit() {
        let lengths: Vec<usize> = (0..200).map(|i| 20 + (i * 37) % 300).collect();
        let limit = 2_000u64;
        let (chunks, big) = chunk(&lengths, 50, limit);
        assert!(big.is_empty());
        let mut seen = 0;
        for c in &chunks {
            let ops: Vec<Value> = c
                .iter()
                .map(|&i| json!("x".repeat(lengths[i] - 2)))
                .collect();
            assert!(request_body(ops).to_string().len() as u64 <= limit);
            assert!(c.len() <= 50);
            seen += c.len();
        }
        assert_eq!(seen, lengths.len());
    }

    #[test]
    fn reads_the_rfc_example_and_lenient_statuses() {
        // RFC 7644 §3.7.3, shortened.
        let body = json!({
            "schemas": [BULK_RESPONSE_SCHEMA],
            "Operations": [
                {"location": "https://example.com/v2/Users/92b725cd", "method": "POST",
                 "bulkId": "qwerty", "version": "W/\"4weymrEsh5O6cAEK\"", "status": "201"},
                {"location": "https://example.com/v2/Groups/e9e30dba", "method": "PATCH",
                 "status": 412, "response": {"status": "412", "detail": "stale"}},
                {"method": "DELETE", "status": {"code": "204"}}
            ]
        });
        let results = parse_response(&body).unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].status, 201);
        assert_eq!(results[0].location_id().as_deref(), Some("92b725cd"));
        assert_eq!(
            results[0].version.as_deref(),
            Some("W/\"4weymrEsh5O6cAEK\"")
        );
        assert_eq!(results[1].status, 412);
        assert!(results[1].response.is_some());
        assert_eq!(results[2].status, 204);
        assert!(parse_response(&json!({"Operations": [{"status": "ok"}]})).is_err());
        assert!(parse_response(&json!({"Operations": 3})).is_err());
        assert!(parse_response(&json!([1])).is_err());
        assert_eq!(parse_response(&json!({})).unwrap(), vec![]);
    }

    #[test]
    fn location_ids_are_decoded() {
        let r = BulkResult {
            method: None,
            bulk_id: None,
            location: Some("/scim/v2/Users/john%20smith/".into()),
            version: None,
            status: 201,
            response: None,
        };
        assert_eq!(r.location_id().as_deref(), Some("john smith"));
    }

    #[test]
    fn results_pair_by_bulk_id_position_and_location() {
        let sent = vec![
            op("POST", Some("b0"), "/Users"),
            op("PATCH", None, "/Users/a"),
            op("DELETE", None, "/Users/b"),
            op("POST", Some("b3"), "/Users"),
        ];
        let result =
            |method: &str, bulk_id: Option<&str>, location: Option<&str>, status| BulkResult {
                method: Some(method.into()),
                bulk_id: bulk_id.map(String::from),
                location: location.map(String::from),
                version: None,
                status,
                response: None,
            };
        // Reordered by the server (RFC 7644 lets it): bulkIds and locations still pair.
        let results = vec![
            result("POST", Some("b3"), Some("https://x/Users/n3"), 201),
            result("DELETE", None, Some("https://x/Users/b"), 204),
            result("POST", Some("b0"), Some("https://x/Users/n0"), 201),
        ];
        let matched = match_results(&sent, results);
        assert_eq!(matched[0].as_ref().map(|r| r.status), Some(201));
        assert_eq!(
            matched[0].as_ref().and_then(BulkResult::location_id),
            Some("n0".into())
        );
        assert!(matched[1].is_none(), "the PATCH got no result");
        assert_eq!(matched[2].as_ref().map(|r| r.status), Some(204));
        assert_eq!(
            matched[3].as_ref().and_then(BulkResult::location_id),
            Some("n3".into())
        );
        // In order, without locations: paired by position.
        let matched = match_results(
            &sent[1..3],
            vec![
                result("PATCH", None, None, 200),
                result("DELETE", None, None, 404),
            ],
        );
        assert_eq!(matched[0].as_ref().map(|r| r.status), Some(200));
        assert_eq!(matched[1].as_ref().map(|r| r.status), Some(404));
    }

    #[test]
    fn operations_serialise_as_the_rfc_shows() {
        let mut o = op("PATCH", None, "/Users/a");
        o.version = Some("W/\"1\"".into());
        o.data = Some(json!({"Operations": []}));
        assert_eq!(
            o.to_json(),
            json!({"method": "PATCH", "path": "/Users/a", "version": "W/\"1\"", "data": {"Operations": []}})
        );
    }
}
