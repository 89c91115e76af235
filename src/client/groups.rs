//! CMS roles as SCIM Groups: after a user is provisioned, the groups named by the policy's
//! `groups_from` field are created when missing, and the user is added to and removed from
//! them by PATCH (`members[value eq "id"]`), or by PUT where PATCH is not supported. What
//! was last provisioned is kept in the link's snapshot, so only changes are sent.

use serde_json::{Value, json};

use super::capabilities::{ServerCapabilities, field};
use super::response::{self, is_success};
use crate::error::ProvisioningError;
use crate::ports::{HttpPort, LogLevel, LogPort, Method};
use crate::scim::filter;
use crate::scim::patch::{PatchOperation, PatchRequest};
use crate::user::{CmsUser, FieldValue};

use super::connector::{Connector, read_list};
use super::resource::id_of;
use super::transport::{Transport, encode_component, now_unix, resource_path};
use super::verdict::is_patch_refusal;

/// The snapshot key holding the groups last provisioned. Stripped before any diff.
///
/// Why the memberships live in the user's snapshot rather than in a place of their own in
/// the link: the snapshot is the one thing the host stores for us per user, as opaque JSON
/// it never reads, and it means "what we last provisioned for this user", which the groups
/// are part of. A field of their own would change the WIT `link` record, the contract every
/// host is built against, for no gain. The price is that every reader of the snapshot must
/// take the key out before treating the rest as the user's SCIM attributes:
/// [`take_snapshot_groups`] does, and `engine::parse_snapshot` is the one reader that does
/// it for the diffs.
pub const SNAPSHOT_GROUPS_KEY: &str = "x-scim-provisioner-groups";

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The groups a user should be in: the values of the `groups_from` field.
pub fn desired_groups(user: &CmsUser, field_name: &str) -> Vec<String> {
    let mut groups: Vec<String> = match user.field(field_name) {
        Some(FieldValue::TextList(l)) => l.clone(),
        Some(FieldValue::Text(s)) => s.split(',').map(|x| x.trim().to_string()).collect(),
        _ => Vec::new(),
    };
    groups.retain(|g| !g.is_empty());
    groups.sort();
    groups.dedup();
    groups
}

/// Removes and returns the groups recorded in a snapshot.
pub fn take_snapshot_groups(snapshot: &mut Value) -> Vec<String> {
    snapshot
        .as_object_mut()
        .and_then(|o| o.remove(SNAPSHOT_GROUPS_KEY))
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// One user's change of one group's membership, held during a batch so that all of the
/// batch's changes to a group go together, in chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MembershipChange {
    /// The group's display name.
    pub group: String,
    /// The remote user's id.
    pub user_id: String,
    /// Added (else removed).
    pub add: bool,
}

/// Operations in one membership PATCH when the server advertises no `patch.maxOperations`.
const DEFAULT_PATCH_OPERATIONS: u32 = 10;

/// How a membership PATCH ended.
enum PatchEnd {
    Done,
    /// Refused for its size (400 `tooMany`, 413): smaller chunks may pass.
    TooMany(ProvisioningError),
    /// PATCH is refused for groups: PUT instead.
    Refused(ProvisioningError),
    Failed(ProvisioningError),
}

impl<H: HttpPort, L: LogPort> Connector<H, L> {
    /// Brings the user's group memberships from `previous` to `desired`: at once, or, inside
    /// `provision-batch`, with the batch's other changes at its end
    /// ([`Connector::flush_memberships`]).
    pub(crate) fn sync_groups(
        &self,
        t: &Transport<'_, H, L>,
        remote_user_id: &str,
        previous: &[String],
        desired: &[String],
        caps: &ServerCapabilities,
    ) -> Result<(), ProvisioningError> {
        let added = desired.iter().filter(|g| !previous.contains(g));
        let removed = previous.iter().filter(|g| !desired.contains(g));
        let changes = added
            .map(|g| (g, true))
            .chain(removed.map(|g| (g, false)))
            .map(|(group, add)| MembershipChange {
                group: group.clone(),
                user_id: remote_user_id.to_string(),
                add,
            });
        if let Some(deferred) = self.deferred_memberships.borrow_mut().as_mut() {
            deferred.extend(changes);
            return Ok(());
        }
        for change in changes {
            let gid = if change.add {
                self.ensure_group(t, &change.group)?
            } else {
                match self.find_group(t, &change.group)? {
                    Some(gid) => gid,
                    None => continue,
                }
            };
            let members = [change.user_id];
            if let Some((_, e)) = self
                .change_members(t, &gid, &members, change.add, caps)
                .into_iter()
                .next()
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Holds the group membership changes of the users provisioned from now on, until
    /// [`Connector::flush_memberships`].
    pub(crate) fn defer_memberships(&self) {
        if self.policy.groups_from.is_some() {
            *self.deferred_memberships.borrow_mut() = Some(Vec::new());
        }
    }

    /// Sends the held membership changes, each group's together: PATCHes of at most
    /// `group_members_per_operation` members an operation and the server's
    /// `patch.maxOperations` operations a request (cut further when the server refuses a
    /// size), or one GET and PUT of the group where PATCH is refused. Returns the remote
    /// users whose change failed, with the error.
    pub(crate) fn flush_memberships(
        &self,
        t: &Transport<'_, H, L>,
        caps: &ServerCapabilities,
    ) -> std::collections::HashMap<String, ProvisioningError> {
        let changes = self
            .deferred_memberships
            .borrow_mut()
            .take()
            .unwrap_or_default();
        let mut by_group: std::collections::BTreeMap<&str, (Vec<String>, Vec<String>)> =
            std::collections::BTreeMap::new();
        for c in &changes {
            let entry = by_group.entry(&c.group).or_default();
            if c.add {
                entry.0.push(c.user_id.clone());
            } else {
                entry.1.push(c.user_id.clone());
            }
        }
        let mut failed = std::collections::HashMap::new();
        for (group, (adds, removes)) in by_group {
            let gid = if adds.is_empty() {
                self.find_group(t, group)
            } else {
                self.ensure_group(t, group).map(Some)
            };
            let gid = match gid {
                Ok(Some(gid)) => gid,
                // Nobody to remove from a group that is not there.
                Ok(None) => continue,
                Err(e) => {
                    for id in adds.iter().chain(&removes) {
                        failed.insert(id.clone(), e.clone());
                    }
                    continue;
                }
            };
            for (members, add) in [(&removes, false), (&adds, true)] {
                if !members.is_empty() {
                    failed.extend(self.change_members(t, &gid, members, add, caps));
                }
            }
        }
        failed
    }

    /// The most members one membership PATCH carries: the policy's members per operation
    /// times the operations a request may hold, or less once the server refused more.
    fn members_per_patch(&self, caps: &ServerCapabilities) -> usize {
        let per_op = self.policy.group_members_per_operation.max(1);
        let ops = caps
            .patch_max_operations
            .unwrap_or(DEFAULT_PATCH_OPERATIONS)
            .max(1);
        let mut most = per_op.saturating_mul(ops);
        if let Some(learned) = self.dialect.borrow().members_per_patch {
            most = most.min(learned.max(1));
        }
        most as usize
    }

    /// Adds or removes `members` of the group `group_id`, in chunks; returns the members
    /// whose change failed, with the error.
    fn change_members(
        &self,
        t: &Transport<'_, H, L>,
        group_id: &str,
        members: &[String],
        add: bool,
        caps: &ServerCapabilities,
    ) -> Vec<(String, ProvisioningError)> {
        let mut failed = Vec::new();
        let mut left: std::collections::VecDeque<&[String]> = std::collections::VecDeque::new();
        if caps.patch && !self.dialect.borrow().patch_refused {
            left.extend(members.chunks(self.members_per_patch(caps).max(1)));
            // The smallest size refused so far: a larger one that passes is never kept.
            let mut refused_at = usize::MAX;
            while let Some(chunk) = left.pop_front() {
                match self.patch_members(t, group_id, chunk, add, caps) {
                    PatchEnd::Done => {
                        // A chunk larger than the size halving settled on passed: keep it.
                        let mut dialect = self.dialect.borrow_mut();
                        if let Some(learned) = dialect.members_per_patch
                            && chunk.len() > learned as usize
                            && chunk.len() < refused_at
                        {
                            dialect.members_per_patch = u32::try_from(chunk.len()).ok();
                        }
                    }
                    PatchEnd::TooMany(e) if chunk.len() > 1 => {
                        refused_at = refused_at.min(chunk.len());
                        // The server caps a request's size: halve it, and remember.
                        let half = chunk.len() / 2;
                        self.dialect.borrow_mut().members_per_patch =
                            Some(u32::try_from(half).unwrap_or(u32::MAX));
                        self.log.log(
                            LogLevel::Warn,
                            &format!(
                                "the server refused {} members in one PATCH ({e}); membership changes go {half} at a time",
                                chunk.len()
                            ),
                        );
                        let (a, b) = chunk.split_at(half);
                        left.push_front(b);
                        left.push_front(a);
                    }
                    PatchEnd::TooMany(e) | PatchEnd::Failed(e) => {
                        failed.extend(chunk.iter().map(|m| (m.clone(), e.clone())));
                    }
                    PatchEnd::Refused(e) => {
                        // As for users, updates go as PUT from now on, and these at once.
                        self.dialect.borrow_mut().patch_refused = true;
                        self.log.log(
                            LogLevel::Warn,
                            &format!(
                                "the server refused a group PATCH ({e}); membership changes go as PUT"
                            ),
                        );
                        left.push_front(chunk);
                        break;
                    }
                }
            }
            if left.is_empty() {
                return failed;
            }
        } else {
            left.push_back(members);
        }
        let rest: Vec<String> = left.iter().flat_map(|c| c.iter().cloned()).collect();
        if let Err(e) = self.put_members(t, group_id, &rest, add) {
            failed.extend(rest.into_iter().map(|m| (m, e.clone())));
        }
        failed
    }

    /// One membership PATCH: `members` added, or removed, in operations of at most the
    /// policy's members each. Nothing is read back: the answer's body is not used. (It is
    /// not asked with `?excludedAttributes=members` either: SCIMMY then drops the change
    /// while it answers 200.)
    fn patch_members(
        &self,
        t: &Transport<'_, H, L>,
        group_id: &str,
        members: &[String],
        add: bool,
        caps: &ServerCapabilities,
    ) -> PatchEnd {
        let per_op = self.policy.group_members_per_operation.max(1) as usize;
        let ops: Vec<PatchOperation> = members
            .chunks(per_op)
            .map(|chunk| {
                if add {
                    PatchOperation::add(
                        "members",
                        Value::Array(chunk.iter().map(|m| json!({"value": m})).collect()),
                    )
                } else {
                    let either: Vec<String> = chunk
                        .iter()
                        .map(|m| format!("value eq {}", filter::quote(m)))
                        .collect();
                    PatchOperation::remove(format!("members[{}]", either.join(" or ")))
                }
            })
            .collect();
        let path = match resource_path("/Groups", group_id) {
            Ok(p) => p,
            Err(e) => return PatchEnd::Failed(e),
        };
        let body = match serde_json::to_value(PatchRequest::new(ops)) {
            Ok(b) => b,
            Err(e) => {
                return PatchEnd::Failed(ProvisioningError::Other(format!(
                    "could not build the PATCH: {e}"
                )));
            }
        };
        let resp = match t.send(Method::Patch, &path, Some(&body), &[]) {
            Ok(r) => r,
            Err(e) => return PatchEnd::Failed(e),
        };
        // 204 and 200 are both success (servers differ per resource type).
        if is_success(resp.status) {
            return PatchEnd::Done;
        }
        let error = response::error_from_response(&resp, now_unix());
        let scim_type = match &error {
            ProvisioningError::Scim(e) => e.scim_type.as_deref(),
            _ => None,
        };
        // Removing members that are not there (400 noTarget) leaves the group as we want it.
        if !add && resp.status == 400 && scim_type == Some("noTarget") {
            return PatchEnd::Done;
        }
        if resp.status == 413 || (resp.status == 400 && scim_type == Some("tooMany")) {
            return PatchEnd::TooMany(error);
        }
        if caps.patch && is_patch_refusal(&error) {
            return PatchEnd::Refused(error);
        }
        PatchEnd::Failed(error)
    }

    fn find_group(
        &self,
        t: &Transport<'_, H, L>,
        name: &str,
    ) -> Result<Option<String>, ProvisioningError> {
        if let Some(id) = self.group_ids.borrow().get(name) {
            return Ok(Some(id.clone()));
        }
        let f = format!("displayName eq {}", filter::quote(name));
        let resp = t.get(&format!(
            "/Groups?filter={}&startIndex=1&count=10&attributes=id,displayName",
            encode_component(&f)
        ))?;
        // Check ourselves, as for users: a server that ignores the filter must not make us
        // use another group.
        let id = read_list(&resp)?
            .0
            .iter()
            .find(|g| {
                field(g, "displayName")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.eq_ignore_ascii_case(name))
            })
            .and_then(id_of);
        if let Some(id) = &id {
            self.group_ids
                .borrow_mut()
                .insert(name.to_string(), id.clone());
        }
        Ok(id)
    }

    /// The group's id, creating the group when it is missing.
    fn ensure_group(
        &self,
        t: &Transport<'_, H, L>,
        name: &str,
    ) -> Result<String, ProvisioningError> {
        if let Some(id) = self.find_group(t, name)? {
            return Ok(id);
        }
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": name});
        let resp = t.send(Method::Post, "/Groups", Some(&body), &[])?;
        if resp.status == 409 {
            // Created meanwhile by someone else.
            return self
                .find_group(t, name)?
                .ok_or_else(|| response::error_from_response(&resp, now_unix()));
        }
        if !is_success(resp.status) {
            return Err(response::error_from_response(&resp, now_unix()));
        }
        let created = response::require_json_body(&resp)?;
        let id = id_of(&created)
            .ok_or_else(|| response::unexpected(&resp, "the created group has no id"))?;
        self.log
            .log(LogLevel::Info, &format!("created group {name} ({id})"));
        // A server that does not keep displayName unique (scim2-server) takes two creations
        // of one group from two instances at once. Each creator settles on the group the
        // server lists first, and deletes its own if that is another (it is new and empty):
        // otherwise each instance would fill a group of its own.
        self.group_ids.borrow_mut().remove(name);
        let settled = self.find_group(t, name)?.unwrap_or_else(|| id.clone());
        if settled != id {
            self.log.log(
                LogLevel::Warn,
                &format!(
                    "group {name} was created twice at once (the server does not keep displayName unique); using {settled}, deleting {id}"
                ),
            );
            if let Ok(path) = resource_path("/Groups", &id) {
                // Best effort: an empty duplicate left behind harms no membership.
                let _ = t.send(Method::Delete, &path, None, &[]);
            }
        }
        self.group_ids
            .borrow_mut()
            .insert(name.to_string(), settled.clone());
        Ok(settled)
    }

    /// Without PATCH: the group read (whole: a PUT replaces every member), changed, and put
    /// back once for all of `members`.
    fn put_members(
        &self,
        t: &Transport<'_, H, L>,
        group_id: &str,
        members: &[String],
        add: bool,
    ) -> Result<(), ProvisioningError> {
        let path = resource_path("/Groups", group_id)?;
        let resp = t.get(&path)?;
        if !is_success(resp.status) {
            return Err(response::error_from_response(&resp, now_unix()));
        }
        let mut group = response::require_json_body(&resp)?;
        let mut current: Vec<Value> = field(&group, "members")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let change: std::collections::HashSet<&str> = members.iter().map(String::as_str).collect();
        let before = current.len();
        if add {
            let present: std::collections::HashSet<String> = current
                .iter()
                .filter_map(|m| m.get("value").and_then(Value::as_str).map(String::from))
                .collect();
            current.extend(
                members
                    .iter()
                    .filter(|m| !present.contains(m.as_str()))
                    .map(|m| json!({"value": m})),
            );
        } else {
            current.retain(|m| {
                m.get("value")
                    .and_then(Value::as_str)
                    .is_none_or(|v| !change.contains(v))
            });
        }
        if current.len() == before {
            return Ok(());
        }
        if let Some(o) = group.as_object_mut() {
            o.remove("meta");
            o.insert("members".into(), Value::Array(current));
        }
        let resp = t.send(Method::Put, &path, Some(&group), &[])?;
        if is_success(resp.status) {
            Ok(())
        } else {
            Err(response::error_from_response(&resp, now_unix()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_groups_are_sorted_unique_and_nonempty() {
        let user = CmsUser {
            id: "1".into(),
            fields: vec![(
                "roles".into(),
                FieldValue::TextList(vec![
                    "member".into(),
                    "editor".into(),
                    "".into(),
                    "member".into(),
                ]),
            )],
            active: true,
        };
        assert_eq!(desired_groups(&user, "roles"), vec!["editor", "member"]);
        assert!(desired_groups(&user, "groups").is_empty());
    }

    /// A batch's changes to one group go together: chunks of the policy's members per
    /// operation, the server's operations per request; a size the server refuses is halved
    /// (and remembered), removals of absent members are done, and a failed chunk names its
    /// members.
    #[test]
    fn membership_changes_go_in_chunks_and_shrink_when_refused() {
        use crate::client::fake::{FakeHttp, MemoryLog, empty_response, json_response};
        use crate::config::{Auth, ConnectorConfig};
        let http = FakeHttp::new(vec![]);
        let too_many = || {
            json_response(
                400,
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                       "status": "400", "scimType": "tooMany", "detail": "at most 3"}),
            )
        };
        // Removals: 5 members in one request (2 operations of 2 and 1), refused; then 2 and
        // 3, the 3 refused; then 1 and 2. Additions: 2 at a time from then on, the last
        // chunk failing.
        for answer in [
            too_many(),
            empty_response(204),
            too_many(),
            json_response(
                400,
                json!({"status": "400", "scimType": "noTarget", "detail": "none"}),
            ),
            empty_response(204),
            json_response(200, json!({"id": "g1"})),
            json_response(500, json!({"status": "500", "detail": "boom"})),
        ] {
            http.push(Ok(answer));
        }
        let config = ConnectorConfig::new(
            "https://idp.example/scim/v2",
            // Long enough that scrubbing it from answers leaves them intact.
            Auth::Bearer("membership-test-token-0123456789".into()),
            1_000,
        )
        .unwrap();
        let c = Connector::open(
            config,
            r#"{"groups_from": "roles", "group_members_per_operation": 2}"#,
            http,
            MemoryLog::default(),
        )
        .unwrap();
        c.group_ids.borrow_mut().insert("staff".into(), "g1".into());
        let caps = ServerCapabilities {
            patch: true,
            patch_max_operations: Some(3),
            ..ServerCapabilities::default()
        };
        c.defer_memberships();
        let t = c.transport();
        let removed: Vec<String> = (1..=5).map(|i| format!("r{i}")).collect();
        let added: Vec<String> = (1..=4).map(|i| format!("a{i}")).collect();
        for id in &removed {
            c.sync_groups(&t, id, &["staff".into()], &[], &caps)
                .unwrap();
        }
        for id in &added {
            c.sync_groups(&t, id, &[], &["staff".into()], &caps)
                .unwrap();
        }
        assert!(t.requests() == 0, "held until the flush");
        let failed = c.flush_memberships(&t, &caps);
        let bodies: Vec<Value> = c
            .http
            .sent()
            .iter()
            .map(|r| serde_json::from_slice(r.body.as_deref().unwrap()).unwrap())
            .collect();
        let members = |b: &Value| -> Vec<String> {
            b["Operations"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|op| match op["value"].as_array() {
                    Some(v) => v
                        .iter()
                        .map(|m| m["value"].as_str().unwrap().to_string())
                        .collect(),
                    None => {
                        let path = op["path"].as_str().unwrap();
                        path.split('"')
                            .skip(1)
                            .step_by(2)
                            .map(String::from)
                            .collect::<Vec<_>>()
                    }
                })
                .collect()
        };
        let sent: Vec<Vec<String>> = bodies.iter().map(members).collect();
        assert_eq!(
            sent,
            [
                vec!["r1", "r2", "r3", "r4", "r5"],
                vec!["r1", "r2"],
                vec!["r3", "r4", "r5"],
                vec!["r3"],
                vec!["r4", "r5"],
                vec!["a1", "a2"],
                vec!["a3", "a4"],
            ]
        );
        assert_eq!(
            bodies[0]["Operations"][0]["path"],
            "members[value eq \"r1\" or value eq \"r2\"]"
        );
        assert_eq!(bodies[0]["Operations"].as_array().unwrap().len(), 3);
        // 3 was refused, 2 passed: 2 is kept.
        assert_eq!(c.dialect.borrow().members_per_patch, Some(2));
        let mut failed: Vec<&String> = failed.keys().collect();
        failed.sort();
        assert_eq!(failed, ["a3", "a4"]);
        assert!(
            c.http
                .calls()
                .iter()
                .all(|c| c == "PATCH https://idp.example/scim/v2/Groups/g1")
        );
    }

    #[test]
    fn snapshot_groups_are_taken_out() {
        let mut s = json!({"userName": "a", SNAPSHOT_GROUPS_KEY: ["editor"]});
        assert_eq!(take_snapshot_groups(&mut s), vec!["editor"]);
        assert_eq!(s, json!({"userName": "a"}));
        assert!(take_snapshot_groups(&mut json!({})).is_empty());
    }
}
