//! A local index of the remote users, for a first sync: listing the server once, paged, and
//! matching locally costs a few requests instead of a look-up per user.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::scim::path::AttrPath;

use super::resource::{id_of, match_value};

/// The format of [`RemoteIndex::to_document`]; a change to it changes this number.
const DOCUMENT_VERSION: u32 = 1;

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
    /// The same ids as a set, so that [`RemoteIndex::add`] tells a known user in constant
    /// time: a first sync adds every user it creates, and a scan of `ids` per addition made
    /// it quadratic (1 ms of CPU per user at 200,000 users).
    known: HashSet<String>,
    /// Why the listing is known to miss users (the server listed only a page of its own
    /// choosing); `None` when it is the whole list. A user absent from an incomplete index
    /// may still be on the server, so it must not be created on the index's word.
    pub incomplete: Option<String>,
}

impl RemoteIndex {
    /// Indexes `resources` by each of the matching attributes, in order.
    pub fn build(resources: &[Value], matching: &[AttrPath]) -> Self {
        let mut index = RemoteIndex {
            by_attr: vec![HashMap::new(); matching.len()],
            ids: Vec::with_capacity(resources.len()),
            known: HashSet::with_capacity(resources.len()),
            incomplete: None,
        };
        for resource in resources {
            let Some(id) = id_of(resource) else { continue };
            let slot = index.ids.len();
            index.known.insert(id.clone());
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

    /// Adds a remote user created since the listing, so that matching finds it: a second
    /// creation of the same person must not take the listing's word that it is absent.
    pub fn add(&mut self, id: &str, resource: &Value, matching: &[AttrPath]) {
        if !self.known.insert(id.to_string()) {
            return;
        }
        let slot = self.ids.len();
        self.ids.push(id.to_string());
        for (i, path) in matching.iter().enumerate() {
            if let (Some(v), Some(by_value)) =
                (match_value(resource, path), self.by_attr.get_mut(i))
            {
                by_value.entry(v.to_lowercase()).or_default().push(slot);
            }
        }
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

    /// The index as a document another connector with the same matching attributes can
    /// load with [`RemoteIndex::from_document`]: the attributes, then each remote user's
    /// id and (lower-cased) values.
    pub fn to_document(&self, matching: &[AttrPath]) -> Value {
        let mut rows: Vec<Vec<Value>> = self.ids.iter().map(|id| vec![json!(id)]).collect();
        for row in &mut rows {
            row.resize(matching.len() + 1, Value::Null);
        }
        for (i, by_value) in self.by_attr.iter().enumerate() {
            for (value, slots) in by_value {
                for &slot in slots {
                    if let Some(cell) = rows.get_mut(slot).and_then(|r| r.get_mut(i + 1)) {
                        *cell = json!(value);
                    }
                }
            }
        }
        let mut document = json!({
            "version": DOCUMENT_VERSION,
            "matching": matching.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "users": rows
        });
        if let (Some(why), Some(obj)) = (&self.incomplete, document.as_object_mut()) {
            obj.insert("incomplete".into(), json!(why));
        }
        document
    }

    /// Loads what [`RemoteIndex::to_document`] wrote, for a connector whose matching
    /// attributes are `matching`: another list of attributes would match wrongly, so it is
    /// refused, as is anything malformed.
    pub fn from_document(document: &Value, matching: &[AttrPath]) -> Result<Self, String> {
        if document.get("version") != Some(&json!(DOCUMENT_VERSION)) {
            return Err("not a remote-user index of this version".into());
        }
        let expected: Vec<String> = matching.iter().map(ToString::to_string).collect();
        let given: Vec<String> = document
            .get("matching")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        if given != expected {
            return Err(format!(
                "the index was built for the matching attributes {given:?}, not {expected:?}"
            ));
        }
        let rows = document
            .get("users")
            .and_then(Value::as_array)
            .ok_or("the index has no users list")?;
        let mut index = RemoteIndex {
            by_attr: vec![HashMap::new(); matching.len()],
            ids: Vec::with_capacity(rows.len()),
            known: HashSet::with_capacity(rows.len()),
            incomplete: document
                .get("incomplete")
                .and_then(Value::as_str)
                .map(String::from),
        };
        for row in rows {
            let cells = row.as_array().ok_or("an index row is not a list")?;
            let id = cells
                .first()
                .and_then(Value::as_str)
                .filter(|id| !crate::scim::uri::is_empty_or_dot_segment(id))
                .ok_or("an index row has no usable id")?;
            let slot = index.ids.len();
            index.known.insert(id.to_string());
            index.ids.push(id.to_string());
            for (i, by_value) in index.by_attr.iter_mut().enumerate() {
                if let Some(value) = cells.get(i + 1).and_then(Value::as_str) {
                    by_value.entry(value.to_lowercase()).or_default().push(slot);
                }
            }
        }
        Ok(index)
    }

    /// The ids of the indexed remote users, in the order they were listed.
    pub fn ids(&self) -> &[String] {
        &self.ids
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

    /// userName, then the work email.
    fn matching() -> [AttrPath; 2] {
        [
            AttrPath::parse("userName").unwrap(),
            AttrPath::parse("emails[type eq \"work\"].value").unwrap(),
        ]
    }

    #[test]
    fn a_document_round_trips_and_is_refused_for_other_matching() {
        let matching = matching();
        let users = [
            json!({"id": "1", "userName": "Alice", "emails": [{"type": "work", "value": "a@x"}]}),
            json!({"id": "2", "userName": "bob"}),
        ];
        let index = RemoteIndex::build(&users, &matching);
        let document = index.to_document(&matching);
        let loaded = RemoteIndex::from_document(&document, &matching).unwrap();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.candidates(0, "ALICE"), vec!["1"]);
        assert_eq!(loaded.candidates(1, "a@x"), vec!["1"]);
        assert_eq!(loaded.candidates(0, "bob"), vec!["2"]);
        assert!(loaded.candidates(1, "b@x").is_empty());
        let other = [AttrPath::parse("externalId").unwrap()];
        assert!(RemoteIndex::from_document(&document, &other).is_err());
        assert!(RemoteIndex::from_document(&json!({"version": 1}), &matching).is_err());
        assert!(RemoteIndex::from_document(&json!("x"), &matching).is_err());
        let mut partial = RemoteIndex::build(&users, &matching);
        partial.incomplete = Some("listed 2 of 5".into());
        let loaded =
            RemoteIndex::from_document(&partial.to_document(&matching), &matching).unwrap();
        assert_eq!(loaded.incomplete.as_deref(), Some("listed 2 of 5"));
        assert_eq!(loaded.ids(), ["1", "2"]);
        let mut bad = document.clone();
        bad["users"] = json!([[null, "x"]]);
        assert!(RemoteIndex::from_document(&bad, &matching).is_err());
    }

    #[test]
    fn finds_by_each_attribute_case_insensitively() {
        let matching = matching();
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

    #[test]
    fn a_user_added_twice_is_indexed_once_even_after_a_loaded_document() {
        let matching = matching();
        let listed = [json!({"id": "1", "userName": "alice"})];
        let built = RemoteIndex::build(&listed, &matching);
        let document = built.to_document(&matching);
        let mut index = RemoteIndex::from_document(&document, &matching).expect("loads");
        index.add("1", &json!({"id": "1", "userName": "alice"}), &matching);
        index.add("2", &json!({"id": "2", "userName": "Bob"}), &matching);
        index.add("2", &json!({"id": "2", "userName": "Bob"}), &matching);
        assert_eq!(index.ids(), ["1", "2"]);
        assert_eq!(index.candidates(0, "alice"), vec!["1"]);
        assert_eq!(index.candidates(0, "bob"), vec!["2"]);
    }
}
