//! Server role: which resources a directory query returns, and in what order. One function
//! that every directory can share (the reference [`MemoryDirectory`](super::MemoryDirectory),
//! and hosts whose store cannot run a SCIM filter itself, through the native bridge), so a
//! filter, a sort and a page mean the same wherever they are evaluated.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::ports::{DirectoryError, Query};
use crate::scim::attr::{self, AttrName};
use crate::scim::filter;

/// What a query selects out of a list of resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// How many resources match the filter in all.
    pub total_results: u64,
    /// The requested page: indices into the resources given, in the order to return them.
    pub indices: Vec<usize>,
}

/// Filters, sorts and pages `views` as `query` asks. Each view is a resource as a client
/// sees it, with its `id` and `meta`, so `id eq …` and `meta.lastModified gt …` work.
///
/// Strings sort case-insensitively; a multi-valued attribute sorts by its primary value,
/// else its first; types order booleans < numbers < strings. The sort is stable, and
/// resources without a value sort last ascending and first descending (RFC 7644 §3.4.2.3).
pub fn select(views: &[Value], query: &Query) -> Result<Selection, DirectoryError> {
    let sort_by = match &query.sort_by {
        Some(s) => Some(
            AttrName::parse(s)
                .map_err(|e| DirectoryError::Other(format!("invalid sortBy: {e}")))?,
        ),
        None => None,
    };
    let mut hits: Vec<(Option<SortKey>, usize)> = views
        .iter()
        .enumerate()
        .filter(|(_, view)| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| filter::matches(f, view))
        })
        .map(|(i, view)| (sort_by.as_ref().and_then(|p| sort_key(p, view)), i))
        .collect();
    if sort_by.is_some() {
        hits.sort_by(|(a, _), (b, _)| {
            let ord = match (a, b) {
                (Some(a), Some(b)) => a.cmp(b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if query.sort_descending {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let total_results = hits.len() as u64;
    let skip = query.start_index.saturating_sub(1) as usize;
    let indices = hits
        .into_iter()
        .skip(skip)
        .take(query.count as usize)
        .map(|(_, i)| i)
        .collect();
    Ok(Selection {
        total_results,
        indices,
    })
}

/// The [`Query`] for a search as it travels between a host and the component, with the
/// filter as text: a filter that does not parse is [`DirectoryError::InvalidFilter`], and a
/// start index of 0 counts as 1. What a host's directory, the native bridge and the
/// component's `selection` export hand to [`select`].
pub fn query_from_text(
    filter: Option<&str>,
    start_index: u32,
    count: u32,
    sort_by: Option<String>,
    sort_descending: bool,
) -> Result<Query, DirectoryError> {
    let filter = match filter {
        Some(text) => {
            Some(filter::parse(text).map_err(|e| DirectoryError::InvalidFilter(e.to_string()))?)
        }
        None => None,
    };
    Ok(Query {
        filter,
        start_index: start_index.max(1),
        count,
        sort_by,
        sort_descending,
    })
}

/// A sortable value. Types order booleans < numbers < strings, so mixed types still give a
/// total order.
#[derive(Debug)]
enum SortKey {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl SortKey {
    fn cmp(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Number(a), SortKey::Number(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortKey::Bool(_) => 0,
            SortKey::Number(_) => 1,
            SortKey::Text(_) => 2,
        }
    }
}

/// The value a resource sorts by: for a multi-valued attribute the primary value, else the
/// first; for a complex value its `value` sub-attribute.
fn sort_key(p: &AttrName, view: &Value) -> Option<SortKey> {
    let root = view.as_object()?;
    let holder: &Map<String, Value> = match &p.urn {
        Some(urn) if !attr::is_core_urn(urn) => attr::get_ci(root, urn)?.as_object()?,
        _ => root,
    };
    let mut v = attr::get_ci(holder, &p.attr)?;
    v = pick(v)?;
    if let Some(sub) = &p.sub_attr {
        v = pick(attr::get_ci(v.as_object()?, sub)?)?;
    } else if let Value::Object(o) = v {
        v = attr::get_ci(o, "value")?;
    }
    match v {
        Value::String(s) => Some(SortKey::Text(s.to_lowercase())),
        Value::Number(n) => n.as_f64().map(SortKey::Number),
        Value::Bool(b) => Some(SortKey::Bool(*b)),
        _ => None,
    }
}

/// One value out of a multi-valued attribute: the primary one, else the first.
fn pick(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(items) => items
            .iter()
            .find(|i| {
                i.as_object()
                    .and_then(|o| attr::get_ci(o, "primary"))
                    .and_then(Value::as_bool)
                    == Some(true)
            })
            .or_else(|| items.first()),
        Value::Null => None,
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(
        filter: Option<&str>,
        sort: Option<&str>,
        desc: bool,
        start: u32,
        count: u32,
    ) -> Query {
        Query {
            filter: filter.and_then(|f| filter::parse(f).ok()),
            start_index: start,
            count,
            sort_by: sort.map(str::to_string),
            sort_descending: desc,
        }
    }

    #[test]
    fn numbers_sort_as_numbers_and_the_primary_value_wins() {
        let views = vec![
            json!({"id": "a", "n": 10, "emails": [{"value": "z@x"}, {"value": "b@x", "primary": true}]}),
            json!({"id": "b", "n": 9, "emails": [{"value": "a@x"}]}),
            json!({"id": "c", "emails": [{"value": "c@x", "primary": true}]}),
        ];
        let by_n = select(&views, &query(None, Some("n"), false, 1, 10)).ok();
        assert_eq!(by_n.map(|s| s.indices), Some(vec![1, 0, 2]));
        let by_mail = select(&views, &query(None, Some("emails"), false, 1, 10)).ok();
        assert_eq!(by_mail.map(|s| s.indices), Some(vec![1, 0, 2]));
        let desc = select(&views, &query(None, Some("n"), true, 1, 10)).ok();
        assert_eq!(desc.map(|s| s.indices), Some(vec![2, 0, 1]));
    }

    #[test]
    fn filters_and_pages() {
        let views: Vec<Value> = (0..10)
            .map(
                |i| json!({"id": i.to_string(), "userName": format!("u{i}"), "active": i % 2 == 0}),
            )
            .collect();
        let s = select(&views, &query(Some("active eq true"), None, false, 2, 2)).ok();
        assert_eq!(
            s,
            Some(Selection {
                total_results: 5,
                indices: vec![2, 4]
            })
        );
        let only_total = select(&views, &query(None, None, false, 1, 0)).ok();
        assert_eq!(
            only_total.map(|s| (s.total_results, s.indices.len())),
            Some((10, 0))
        );
    }

    #[test]
    fn a_query_from_text_parses_its_filter_or_says_invalid_filter() {
        let q = query_from_text(Some(r#"userName eq "a""#), 0, 5, None, true).ok();
        assert_eq!(q.as_ref().map(|q| q.start_index), Some(1));
        assert!(q.is_some_and(|q| q.filter.is_some() && q.sort_descending && q.count == 5));
        assert!(matches!(
            query_from_text(Some("userName eq"), 1, 1, None, false),
            Err(DirectoryError::InvalidFilter(_))
        ));
        assert!(query_from_text(None, 3, 1, None, false).is_ok_and(|q| q.filter.is_none()));
    }

    #[test]
    fn a_bad_sort_path_is_an_error() {
        assert!(select(&[], &query(None, Some("a[b"), false, 1, 1)).is_err());
    }
}
