//! List and search requests (RFC 7644 §3.4.2, §3.4.3): reading `filter`, `startIndex`,
//! `count`, `sortBy`, `sortOrder`, `attributes` and `excludedAttributes` from a query
//! string or a SearchRequest body, and building the ListResponse.

use serde_json::{Value, json};

use crate::ports::Query;
use crate::scim::attr::{self, AttrName};
use crate::scim::filter::{self, Filter};
use crate::server::error::ScimError;
use crate::server::http::QueryParams;
use crate::server::projection::{Projection, split_names};

/// The ListResponse message schema.
pub(crate) const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A parsed list or search request.
#[derive(Debug, Clone)]
pub(crate) struct ListRequest {
    /// The filter, sort and page for the directory.
    pub query: Query,
    /// What to return of each resource.
    pub projection: Projection,
}

/// The raw parameters, from whichever form they came in.
struct Params {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl ListRequest {
    /// From the query string of `GET /Users` and the like.
    pub fn from_query(params: &QueryParams, max_results: u32) -> Result<Self, ScimError> {
        let text = |name: &str| params.get(name).filter(|v| !v.trim().is_empty());
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            text(name)
                .map(|v| parse_int(v).ok_or_else(|| not_an_integer(name)))
                .transpose()
        };
        Self::build(
            Params {
                filter: text("filter").map(str::to_string),
                start_index: int("startIndex")?,
                count: int("count")?,
                sort_by: text("sortBy").map(str::to_string),
                sort_order: text("sortOrder").map(str::to_string),
                attributes: text("attributes").map(split_names).unwrap_or_default(),
                excluded: text("excludedAttributes")
                    .map(split_names)
                    .unwrap_or_default(),
            },
            max_results,
        )
    }

    /// From the body of `POST /.search` (a SearchRequest). Numbers may come as numbers or
    /// numeric strings, and attribute lists as arrays or comma-separated strings.
    pub fn from_search(body: &Value, max_results: u32) -> Result<Self, ScimError> {
        let Value::Object(obj) = body else {
            return Err(ScimError::syntax("a SearchRequest must be a JSON object"));
        };
        let field = |name: &str| attr::get_ci(obj, name).filter(|v| !v.is_null());
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match field(name) {
                None => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::value(format!("{name} must be a string"))),
            }
        };
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            match field(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| {
                        n.as_f64()
                            .filter(|f| f.fract() == 0.0)
                            .map(|f| f.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
                    })
                    .map(Some)
                    .ok_or_else(|| not_an_integer(name)),
                Some(Value::String(s)) => {
                    parse_int(s).map(Some).ok_or_else(|| not_an_integer(name))
                }
                Some(_) => Err(not_an_integer(name)),
            }
        };
        let names = |name: &str| -> Result<Vec<String>, ScimError> {
            match field(name) {
                None => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(split_names(s)),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(|s| s.trim().to_string()).ok_or_else(|| {
                            ScimError::value(format!("{name} must be an array of strings"))
                        })
                    })
                    .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
                    .collect(),
                Some(_) => Err(ScimError::value(format!(
                    "{name} must be an array of strings"
                ))),
            }
        };
        Self::build(
            Params {
                filter: text("filter")?,
                start_index: int("startIndex")?,
                count: int("count")?,
                sort_by: text("sortBy")?,
                sort_order: text("sortOrder")?,
                attributes: names("attributes")?,
                excluded: names("excludedAttributes")?,
            },
            max_results,
        )
    }

    fn build(p: Params, max_results: u32) -> Result<Self, ScimError> {
        let filter: Option<Filter> = p.filter.as_deref().map(filter::parse).transpose()?;
        // RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count means 0, and
        // the server returns no more than it is willing to.
        let start_index = p.start_index.unwrap_or(1).clamp(1, i64::from(u32::MAX)) as u32;
        let count = p
            .count
            .unwrap_or(i64::from(max_results))
            .clamp(0, i64::from(max_results)) as u32;
        let sort_by = match &p.sort_by {
            Some(s) => Some(
                AttrName::parse(s.trim())
                    .map_err(|e| ScimError::value(format!("sortBy: {e}")))?
                    .to_string(),
            ),
            None => None,
        };
        let sort_descending = match p.sort_order.as_deref().map(str::trim) {
            None => false,
            Some(o) if o.eq_ignore_ascii_case("ascending") => false,
            Some(o) if o.eq_ignore_ascii_case("descending") => true,
            Some(o) => {
                return Err(ScimError::value(format!(
                    "sortOrder must be ascending or descending, not {o:?}"
                )));
            }
        };
        Ok(ListRequest {
            query: Query {
                filter,
                start_index,
                count,
                sort_by,
                sort_descending,
            },
            projection: Projection::new(&p.attributes, &p.excluded)?,
        })
    }
}

fn not_an_integer(name: &str) -> ScimError {
    ScimError::value(format!("{name} must be an integer"))
}

/// Reads a decimal integer, saturating at the bounds of `i64` rather than failing, since
/// only the clamped value matters.
fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),  // ok: the first byte is ASCII
        Some(b'+') => (false, &s[1..]), // ok: the first byte is ASCII
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: i64 = 0;
    for b in digits.bytes() {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    Some(if negative { -n } else { n })
}

/// The ListResponse body.
pub(crate) fn list_response(total: u64, start_index: u32, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_query(q: &str) -> Result<ListRequest, ScimError> {
        ListRequest::from_query(&QueryParams::parse(q), 200)
    }

    fn page(q: &str) -> (u32, u32) {
        match from_query(q) {
            Ok(r) => (r.query.start_index, r.query.count),
            Err(e) => panic!("{q}: {e:?}"),
        }
    }

    #[test]
    fn paging_math() {
        assert_eq!(page(""), (1, 200));
        assert_eq!(page("startIndex=0&count=-5"), (1, 0));
        assert_eq!(page("startIndex=-3&count=0"), (1, 0));
        assert_eq!(page("startIndex=11&count=10"), (11, 10));
        assert_eq!(page("count=100000"), (1, 200));
        assert_eq!(page("startIndex=99999999999999999999999"), (u32::MAX, 200));
        assert_eq!(page("count=-99999999999999999999999"), (1, 0));
        assert_eq!(page("count=&startIndex="), (1, 200));
        assert_eq!(page("count=%2B5"), (1, 5));
        for bad in ["count=abc", "startIndex=1.5", "count=-", "count=1e3"] {
            let e = from_query(bad).err();
            assert_eq!(e.map(|e| e.scim_type), Some(Some("invalidValue")), "{bad}");
        }
    }

    #[test]
    fn filter_and_sort() {
        let r = from_query(
            "filter=emails%5Btype+eq+%22work%22+and+value+co+%22%40example.com%22%5D&sortBy=NAME.familyName&sortOrder=Descending",
        );
        let q = r.map(|r| r.query).ok();
        assert_eq!(
            q.as_ref()
                .and_then(|q| q.filter.as_ref())
                .map(ToString::to_string),
            Some(r#"emails[type eq "work" and value co "@example.com"]"#.to_string())
        );
        assert_eq!(
            q.as_ref().and_then(|q| q.sort_by.clone()),
            Some("NAME.familyName".to_string())
        );
        assert_eq!(q.map(|q| q.sort_descending), Some(true));
        let e = from_query("filter=userName+eq").err();
        assert_eq!(
            e.map(|e| (e.status, e.scim_type)),
            Some((400, Some("invalidFilter")))
        );
        assert!(from_query("sortOrder=sideways").is_err());
        assert!(from_query("sortBy=a%5Bb").is_err());
    }

    #[test]
    fn search_bodies() {
        let r = ListRequest::from_search(
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "attributes": ["displayName", "userName"],
                "excludedAttributes": "emails",
                "filter": "displayName sw \"smith\"",
                "startIndex": "1",
                "count": 10.0
            }),
            200,
        );
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!((r.query.start_index, r.query.count), (1, 10));
        assert!(r.query.filter.is_some());
        assert!(!r.projection.wants("emails"));
        for bad in [
            json!([]),
            json!({"count": true}),
            json!({"count": 1.5}),
            json!({"filter": 3}),
            json!({"attributes": [1]}),
            json!({"attributes": {}}),
        ] {
            assert!(ListRequest::from_search(&bad, 200).is_err(), "{bad}");
        }
        assert!(ListRequest::from_search(&json!({}), 200).is_ok());
    }

    #[test]
    fn response_shape() {
        assert_eq!(
            list_response(5, 3, vec![json!({"id": "a"})]),
            json!({
                "schemas": [LIST_RESPONSE_SCHEMA],
                "totalResults": 5,
                "startIndex": 3,
                "itemsPerPage": 1,
                "Resources": [{"id": "a"}]
            })
        );
    }
}
