//! A local index of the remote users, for a first sync: listing the server once, paged, and
//! matching locally costs a few requests instead of a look-up per user.

use std::collections::HashMap;

use serde_json::Value;

use crate::scim::path::AttrPath;

use super::resource::{id_of, match_value};

/// What listing the remote users came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteListing {
    /// How many remote users were listed.
    pub users: u32,
    /// How many requests the listing took.
    pub requests: u32,
}

/// The remote users by the value of each matching attribute (lower-cased: userName and
/// emails compare case-insensitively in SCIM, and a false candidate is re-checked anyway).
#[derive(Debug, Default)]
pub struct RemoteIndex {
    by_attr: Vec<HashMap<String, Vec<usize>>>,
    ids: Vec<String>,
}

impl RemoteIndex {
    /// Indexes `resources` by each of the matching attributes, in order.
    pub fn build(resources: &[Value], matching: &[AttrPath]) -> Self {
        let mut index = RemoteIndex {
            by_attr: vec![HashMap::new(); matching.len()],
            ids: Vec::with_capacity(resources.len()),
        };
        for resource in resources {
            let Some(id) = id_of(resource) else { continue };
            let slot = index.ids.len();
            index.ids.push(id);
            for (i, path) in matching.iter().enumerate() {
                if let Some(v) = match_value(resource, path) {
                    index.by_attr[i]
                        .entry(v.to_lowercase())
                        .or_default()
                        .push(slot);
                }
            }
        }
        index
    }

    /// The ids of the remote users whose `attr`-th matching attribute has `value`.
    pub fn candidates(&self, attr: usize, value: &str) -> Vec<&str> {
        self.by_attr
            .get(attr)
            .and_then(|m| m.get(&value.to_lowercase()))
            .map(|slots| {
                slots
                    .iter()
                    .filter_map(|s| self.ids.get(*s).map(String::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many remote users are indexed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no remote user is indexed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_by_each_attribute_case_insensitively() {
        let matching = [
            AttrPath::parse("userName").unwrap(),
            AttrPath::parse("emails[type eq \"work\"].value").unwrap(),
        ];
        let users = [
            json!({"id": "1", "userName": "Alice", "emails": [{"type": "work", "value": "a@x"}]}),
            json!({"id": "2", "userName": "bob"}),
            json!({"userName": "no-id"}),
            json!({"id": "3", "userName": "carol", "emails": [{"type": "work", "value": "A@X"}]}),
        ];
        let index = RemoteIndex::build(&users, &matching);
        assert_eq!(index.len(), 3);
        assert_eq!(index.candidates(0, "alice"), vec!["1"]);
        assert_eq!(index.candidates(1, "a@x"), vec!["1", "3"]);
        assert!(index.candidates(0, "no-id").is_empty());
        assert!(index.candidates(5, "x").is_empty());
    }
}
