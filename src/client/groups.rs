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

impl<H: HttpPort, L: LogPort> Connector<H, L> {
    /// Brings the user's group memberships from `previous` to `desired`.
    pub(crate) fn sync_groups(
        &self,
        t: &Transport<'_, H, L>,
        remote_user_id: &str,
        previous: &[String],
        desired: &[String],
        caps: &ServerCapabilities,
    ) -> Result<(), ProvisioningError> {
        for name in desired.iter().filter(|g| !previous.contains(g)) {
            let gid = self.ensure_group(t, name)?;
            self.change_membership(t, &gid, remote_user_id, true, caps)?;
        }
        for name in previous.iter().filter(|g| !desired.contains(g)) {
            if let Some(gid) = self.find_group(t, name)? {
                self.change_membership(t, &gid, remote_user_id, false, caps)?;
            }
        }
        Ok(())
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
        self.group_ids
            .borrow_mut()
            .insert(name.to_string(), id.clone());
        Ok(id)
    }

    fn change_membership(
        &self,
        t: &Transport<'_, H, L>,
        group_id: &str,
        user_id: &str,
        add: bool,
        caps: &ServerCapabilities,
    ) -> Result<(), ProvisioningError> {
        let path = resource_path("/Groups", group_id)?;
        if caps.patch {
            let op = if add {
                PatchOperation::add("members", json!([{"value": user_id}]))
            } else {
                PatchOperation::remove(format!("members[value eq {}]", filter::quote(user_id)))
            };
            let body = serde_json::to_value(PatchRequest::new(vec![op]))
                .map_err(|e| ProvisioningError::Other(format!("could not build the PATCH: {e}")))?;
            let resp = t.send(Method::Patch, &path, Some(&body), &[])?;
            // 204 and 200 are both success (servers differ per resource type); removing a
            // member that is not there (400 noTarget) leaves the group as we want it.
            if is_success(resp.status) {
                return Ok(());
            }
            let error = response::error_from_response(&resp, now_unix());
            if let ProvisioningError::Scim(e) = &error
                && !add
                && resp.status == 400
                && e.scim_type.as_deref() == Some("noTarget")
            {
                return Ok(());
            }
            if !is_patch_refusal(&error) {
                return Err(error);
            }
            // The server refuses this PATCH (501, 405, 400 noTarget/invalidPath): as for
            // users, updates go as PUT from now on, and this one at once.
            self.dialect.borrow_mut().patch_refused = true;
            self.log.log(
                crate::ports::LogLevel::Warn,
                &format!(
                    "the server refused a group PATCH ({error}); membership changes go as PUT"
                ),
            );
        }
        // No PATCH: read the group, change its members, PUT it back.
        let resp = t.get(&path)?;
        if !is_success(resp.status) {
            return Err(response::error_from_response(&resp, now_unix()));
        }
        let mut group = response::require_json_body(&resp)?;
        let mut members: Vec<Value> = field(&group, "members")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let present = members
            .iter()
            .any(|m| m.get("value").and_then(Value::as_str) == Some(user_id));
        match (add, present) {
            (true, true) | (false, false) => return Ok(()),
            (true, false) => members.push(json!({"value": user_id})),
            (false, true) => {
                members.retain(|m| m.get("value").and_then(Value::as_str) != Some(user_id));
            }
        }
        if let Some(o) = group.as_object_mut() {
            o.remove("meta");
            o.insert("members".into(), Value::Array(members));
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

    #[test]
    fn snapshot_groups_are_taken_out() {
        let mut s = json!({"userName": "a", SNAPSHOT_GROUPS_KEY: ["editor"]});
        assert_eq!(take_snapshot_groups(&mut s), vec!["editor"]);
        assert_eq!(s, json!({"userName": "a"}));
        assert!(take_snapshot_groups(&mut json!({})).is_empty());
    }
}
