//! [`MemoryDirectory`]: a reference [`Directory`] that keeps resources in memory. Hosts can
//! use it to try the server role, and the tests use it; a real host backs the port with the
//! CMS's own tables and should behave the same way.

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

use crate::ports::{Directory, DirectoryError, Query, QueryPage, ResourceKind, StoredResource};
use crate::scim::attr;
use crate::server::select::select;

/// Users and Groups in memory, behind a mutex so one directory can serve several threads.
///
/// It filters, sorts and pages with [`select`] (against the resource with its `id` and
/// `meta`, so `id eq` and `meta.lastModified gt` work), sorts strings case-insensitively,
/// enforces the uniqueness of `userName` and of Group `displayName` case-insensitively,
/// versions resources `W/"<n>"` with a counter shared by all resources, and drops a deleted
/// User from every group's `members`.
pub struct MemoryDirectory {
    state: Mutex<State>,
    clock: fn() -> u64,
}

#[derive(Default)]
struct State {
    users: Vec<StoredResource>,
    groups: Vec<StoredResource>,
    next_id: u64,
    next_version: u64,
}

impl State {
    fn list(&self, kind: ResourceKind) -> &Vec<StoredResource> {
        match kind {
            ResourceKind::User => &self.users,
            ResourceKind::Group => &self.groups,
        }
    }

    fn list_mut(&mut self, kind: ResourceKind) -> &mut Vec<StoredResource> {
        match kind {
            ResourceKind::User => &mut self.users,
            ResourceKind::Group => &mut self.groups,
        }
    }

    fn version(&mut self) -> String {
        self.next_version += 1;
        format!("W/\"{}\"", self.next_version)
    }

    /// A UUID-shaped id that never repeats within this directory.
    fn id(&mut self) -> String {
        self.next_id += 1;
        let a = mix(self.next_id);
        let b = mix(a ^ self.next_id);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            (b & 0xffff_0000_0000) | (self.next_id & 0xffff_ffff)
        )
    }
}

/// SplitMix64: spreads the counter so ids do not look sequential. The low 32 bits of the
/// id keep the counter itself, so ids stay distinct.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Default for MemoryDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDirectory {
    /// An empty directory whose timestamps come from the system clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock)
    }

    /// An empty directory whose timestamps come from `clock`, in Unix seconds; tests pass
    /// a fixed clock.
    pub fn with_clock(clock: fn() -> u64) -> Self {
        MemoryDirectory {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    /// How many resources of this kind are stored.
    pub fn len(&self, kind: ResourceKind) -> usize {
        self.lock().list(kind).len()
    }

    /// True when no resource of this kind is stored.
    pub fn is_empty(&self, kind: ResourceKind) -> bool {
        self.len(kind) == 0
    }

    /// A poisoned lock only means another thread panicked mid-call; every write below
    /// completes before it can observe a failure, so the state is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> String {
        rfc3339((self.clock)())
    }
}

/// The attribute whose value must be unique, case-insensitively, per kind.
fn unique_attr(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    }
}

fn unique_key(kind: ResourceKind, resource: &Value) -> Option<String> {
    let obj = resource.as_object()?;
    attr::get_ci(obj, unique_attr(kind))
        .and_then(Value::as_str)
        .map(str::to_lowercase)
}

fn check_unique(
    kind: ResourceKind,
    list: &[StoredResource],
    resource: &Value,
    except_id: Option<&str>,
) -> Result<(), DirectoryError> {
    let Some(key) = unique_key(kind, resource) else {
        return Ok(());
    };
    let taken = list.iter().any(|r| {
        Some(r.id.as_str()) != except_id && unique_key(kind, &r.resource).as_deref() == Some(&key)
    });
    if taken {
        return Err(DirectoryError::Conflict(format!(
            "{} {:?} is already taken",
            unique_attr(kind),
            key
        )));
    }
    Ok(())
}

/// The resource without the keys the server writes itself.
fn strip_server_keys(resource: &Value) -> Value {
    let mut obj = resource.as_object().cloned().unwrap_or_default();
    obj.retain(|k, _| !attr::name_eq(k, "id") && !attr::name_eq(k, "meta"));
    Value::Object(obj)
}

/// The resource as a client sees it, for filtering and sorting: with `id` and `meta`.
fn full_view(kind: ResourceKind, r: &StoredResource) -> Value {
    let mut obj = r.resource.as_object().cloned().unwrap_or_default();
    obj.insert("id".into(), Value::String(r.id.clone()));
    obj.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": r.created,
            "lastModified": r.last_modified,
            "version": r.version,
        }),
    );
    Value::Object(obj)
}

impl Directory for MemoryDirectory {
    fn get(&self, kind: ResourceKind, id: &str) -> Result<Option<StoredResource>, DirectoryError> {
        Ok(self.lock().list(kind).iter().find(|r| r.id == id).cloned())
    }

    fn query(&self, kind: ResourceKind, query: &Query) -> Result<QueryPage, DirectoryError> {
        let state = self.lock();
        let list = state.list(kind);
        let views: Vec<Value> = list.iter().map(|r| full_view(kind, r)).collect();
        let selection = select(&views, query)?;
        Ok(QueryPage {
            total_results: selection.total_results,
            resources: selection
                .indices
                .into_iter()
                .filter_map(|i| list.get(i).cloned())
                .collect(),
        })
    }

    fn create(
        &self,
        kind: ResourceKind,
        resource: &Value,
    ) -> Result<StoredResource, DirectoryError> {
        let now = self.now();
        let mut state = self.lock();
        check_unique(kind, state.list(kind), resource, None)?;
        let stored = StoredResource {
            id: state.id(),
            version: state.version(),
            created: now.clone(),
            last_modified: now,
            resource: strip_server_keys(resource),
        };
        state.list_mut(kind).push(stored.clone());
        Ok(stored)
    }

    fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        resource: &Value,
        if_version: Option<&str>,
    ) -> Result<StoredResource, DirectoryError> {
        let now = self.now();
        let mut state = self.lock();
        let Some(index) = state.list(kind).iter().position(|r| r.id == id) else {
            return Err(DirectoryError::NotFound);
        };
        // ok: index came from position() under the same lock, so both indexings are in bounds
        if let Some(v) = if_version
            && state.list(kind)[index].version != v
        {
            return Err(DirectoryError::VersionMismatch);
        }
        check_unique(kind, state.list(kind), resource, Some(id))?;
        let version = state.version();
        let entry = &mut state.list_mut(kind)[index];
        entry.version = version;
        entry.last_modified = now;
        entry.resource = strip_server_keys(resource);
        Ok(entry.clone())
    }

    fn delete(&self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError> {
        let now = self.now();
        let mut state = self.lock();
        let before = state.list(kind).len();
        state.list_mut(kind).retain(|r| r.id != id);
        if state.list(kind).len() == before {
            return Ok(false);
        }
        if kind == ResourceKind::User {
            drop_member(&mut state, id, &now);
        }
        Ok(true)
    }
}

/// Removes `member_id` from every group's `members`, bumping the version of each group
/// that changed.
fn drop_member(state: &mut State, member_id: &str, now: &str) {
    let mut changed = Vec::new();
    for (i, group) in state.groups.iter_mut().enumerate() {
        let Some(obj) = group.resource.as_object_mut() else {
            continue;
        };
        let Some(key) = attr::find_key(obj, "members").map(str::to_string) else {
            continue;
        };
        if let Some(Value::Array(members)) = obj.get_mut(&key) {
            let before = members.len();
            members.retain(|m| {
                m.as_object()
                    .and_then(|o| attr::get_ci(o, "value"))
                    .and_then(Value::as_str)
                    != Some(member_id)
            });
            if members.len() != before {
                if members.is_empty() {
                    obj.remove(&key);
                }
                changed.push(i);
            }
        }
    }
    for i in changed {
        let version = state.version();
        if let Some(group) = state.groups.get_mut(i) {
            group.version = version;
            group.last_modified = now.to_string();
        }
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp.
fn rfc3339(secs: u64) -> String {
    crate::time::rfc3339(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::parse;

    fn clock() -> u64 {
        1_700_000_000
    }

    fn q(filter: Option<&str>, start: u32, count: u32, sort: Option<&str>, desc: bool) -> Query {
        Query {
            filter: filter.and_then(|f| parse(f).ok()),
            start_index: start,
            count,
            sort_by: sort.map(str::to_string),
            sort_descending: desc,
        }
    }

    fn names(page: &QueryPage) -> Vec<String> {
        page.resources
            .iter()
            .map(|r| r.resource["userName"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn crud_versions_and_uniqueness() {
        let d = MemoryDirectory::with_clock(clock);
        let a = d
            .create(ResourceKind::User, &json!({"userName": "Alice", "id": "x"}))
            .ok();
        let a = a.as_ref();
        assert_eq!(a.map(|r| r.version.as_str()), Some("W/\"1\""));
        assert_eq!(a.map(|r| r.created.as_str()), Some("2023-11-14T22:13:20Z"));
        assert!(a.is_some_and(|r| r.resource.get("id").is_none() && r.id.len() == 36));
        let id = a.map(|r| r.id.clone()).unwrap_or_default();
        assert_eq!(
            d.create(ResourceKind::User, &json!({"userName": "ALICE"})),
            Err(DirectoryError::Conflict(
                "userName \"alice\" is already taken".into()
            ))
        );
        // Replacing with its own name is not a conflict; a stale version is refused.
        let r = d.replace(
            ResourceKind::User,
            &id,
            &json!({"userName": "alice"}),
            Some("W/\"1\""),
        );
        assert_eq!(r.map(|r| r.version), Ok("W/\"2\"".to_string()));
        assert_eq!(
            d.replace(ResourceKind::User, &id, &json!({}), Some("W/\"1\"")),
            Err(DirectoryError::VersionMismatch)
        );
        assert_eq!(
            d.replace(ResourceKind::User, "nope", &json!({}), None),
            Err(DirectoryError::NotFound)
        );
        // Groups are unique by displayName; the same name as a user is fine.
        assert!(
            d.create(ResourceKind::Group, &json!({"displayName": "alice"}))
                .is_ok()
        );
        assert!(
            d.create(ResourceKind::Group, &json!({"displayName": "Alice"}))
                .is_err()
        );
        assert_eq!(d.delete(ResourceKind::User, &id), Ok(true));
        assert_eq!(d.delete(ResourceKind::User, &id), Ok(false));
        assert_eq!(d.get(ResourceKind::User, &id), Ok(None));
    }

    #[test]
    fn deleting_a_user_drops_its_memberships() {
        let d = MemoryDirectory::with_clock(clock);
        let u = d
            .create(ResourceKind::User, &json!({"userName": "u"}))
            .map(|r| r.id)
            .unwrap_or_default();
        let g = d
            .create(
                ResourceKind::Group,
                &json!({"displayName": "g", "members": [{"value": u}]}),
            )
            .map(|r| r.id)
            .unwrap_or_default();
        assert_eq!(d.delete(ResourceKind::User, &u), Ok(true));
        let group = d.get(ResourceKind::Group, &g).ok().flatten();
        assert!(
            group
                .as_ref()
                .is_some_and(|g| g.resource.get("members").is_none())
        );
        assert_eq!(group.map(|g| g.version), Some("W/\"3\"".to_string()));
    }

    #[test]
    fn query_filters_sorts_and_pages() {
        let d = MemoryDirectory::with_clock(clock);
        for (name, family, email) in [
            ("carol", Some("Zeta"), "carol@example.com"),
            ("alice", Some("beta"), "alice@example.org"),
            ("Bob", None, "bob@example.com"),
            ("dave", Some("Alpha"), "dave@example.com"),
        ] {
            let mut u = json!({"userName": name, "emails": [{"type": "work", "value": email}]});
            if let Some(f) = family {
                u["name"] = json!({"familyName": f});
            }
            assert!(d.create(ResourceKind::User, &u).is_ok());
        }
        let all = d.query(ResourceKind::User, &q(None, 1, 10, None, false));
        assert_eq!(
            all.as_ref().map(names).ok(),
            Some(vec![
                "carol".into(),
                "alice".into(),
                "Bob".into(),
                "dave".into()
            ])
        );
        let sorted = d.query(ResourceKind::User, &q(None, 1, 10, Some("userName"), false));
        assert_eq!(
            sorted.as_ref().map(names).ok(),
            Some(vec![
                "alice".into(),
                "Bob".into(),
                "carol".into(),
                "dave".into()
            ])
        );
        // Missing values last ascending, first descending.
        let by_family = d.query(
            ResourceKind::User,
            &q(None, 1, 10, Some("name.familyName"), false),
        );
        assert_eq!(
            by_family.as_ref().map(names).ok(),
            Some(vec![
                "dave".into(),
                "alice".into(),
                "carol".into(),
                "Bob".into()
            ])
        );
        let desc = d.query(
            ResourceKind::User,
            &q(None, 1, 10, Some("name.familyName"), true),
        );
        assert_eq!(
            desc.as_ref().map(names).ok(),
            Some(vec![
                "Bob".into(),
                "carol".into(),
                "alice".into(),
                "dave".into()
            ])
        );
        let filtered = d.query(
            ResourceKind::User,
            &q(
                Some(r#"emails[type eq "work" and value co "@example.com"]"#),
                2,
                1,
                Some("userName"),
                false,
            ),
        );
        assert_eq!(filtered.as_ref().map(|p| p.total_results).ok(), Some(3));
        assert_eq!(
            filtered.as_ref().map(names).ok(),
            Some(vec!["carol".into()])
        );
        let none = d.query(ResourceKind::User, &q(None, 1, 0, None, false));
        assert_eq!(
            none.map(|p| (p.total_results, p.resources.len())),
            Ok((4, 0))
        );
        let past = d.query(ResourceKind::User, &q(None, 9, 5, None, false));
        assert_eq!(
            past.map(|p| (p.total_results, p.resources.len())),
            Ok((4, 0))
        );
        let by_meta = d.query(
            ResourceKind::User,
            &q(Some(r#"meta.resourceType eq "User""#), 1, 10, None, false),
        );
        assert_eq!(by_meta.map(|p| p.total_results), Ok(4));
    }

    #[test]
    fn ids_are_distinct_and_uuid_shaped() {
        let mut s = State::default();
        let ids: std::collections::HashSet<String> = (0..2000).map(|_| s.id()).collect();
        assert_eq!(ids.len(), 2000);
        assert!(
            ids.iter()
                .all(|i| i.len() == 36 && i.as_bytes()[14] == b'4')
        );
    }
}
