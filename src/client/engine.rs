//! The provisioning engine: brings one remote user in line with one CMS user after an event.
//! It selects the operation, matches before creating so no user is ever duplicated (by a
//! look-up, or, for `userName` under `matching_look_up = "on_conflict"`, by the server's
//! 409 to the creation itself), sends minimal PATCHes (or PUTs that keep what we do not
//! map), honours ETags, and turns every answer into an outcome or a structured,
//! retry-classed error.

use serde_json::{Value, json};

use super::capabilities::ServerCapabilities;
use super::response::{self, is_success};
use crate::error::{ProvisioningError, TransportError};
use crate::mapping::MapMode;
use crate::policy::{MatchingLookUp, RemoteMissing};
use crate::ports::{HttpPort, HttpResponse, LogLevel, LogPort, Method};
use crate::scim::patch::{PatchOperation, PatchRequest, diff};
use crate::scim::path::AttrPath;
use crate::scim::text;
use crate::user::{Action, CmsUser, Link, ProvisionOutcome, UserEvent};

use super::connector::{Connector, read_list, read_resource};
use super::resource::{
    id_of, location_of, match_filter, match_value, merge_for_put, simple_match_filter, union_shape,
    version_of,
};
use super::selection::{Decision, Situation, decide};
use super::transport::{Transport, encode_component, now_unix, resource_path};
use super::verdict::{Sent, cannot_verify, filter_ignored, more_expected};

/// How many candidates a matching look-up asks for: enough to name an ambiguity.
const MATCH_PAGE: u32 = 10;

impl<H: HttpPort, L: LogPort> Connector<H, L> {
    /// Brings the remote user in line with `user` after `event`. `link` is what the host
    /// stored after the last call for this user.
    pub fn provision(
        &self,
        user: &CmsUser,
        event: UserEvent,
        link: Option<&Link>,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        self.provision_on(&self.transport(), user, event, link)
    }

    /// [`Connector::provision`] on `t`, which counts its requests whatever the result.
    pub(crate) fn provision_on(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        event: UserEvent,
        link: Option<&Link>,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        self.provision_checked(t, user, event, link, false)
    }

    /// [`Connector::provision_on`]; `may_exist` says that a creation of this user may have
    /// reached the server already (a `/Bulk` POST answered 409, or whose answer was lost),
    /// so a creation looks it up by every matching attribute before it sends anything,
    /// whatever `matching_look_up` says.
    pub(crate) fn provision_checked(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        event: UserEvent,
        link: Option<&Link>,
        may_exist: bool,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let decision = self.plan(user, event, link.is_some());
        let run = || match (&decision, link) {
            (Decision::Skip(reason), _) => {
                Ok(outcome(Action::Skipped, link.cloned()).with_reason(reason.to_string()))
            }
            (Decision::Create, _) => self.create(t, user, may_exist),
            (Decision::Update, Some(link)) => self.update(t, user, link, false),
            (Decision::Reactivate, Some(link)) => self.update(t, user, link, true),
            (Decision::Deactivate, Some(link)) => self.deactivate(t, link),
            (Decision::Delete, Some(link)) => self.delete(t, link),
            (_, None) => Err(ProvisioningError::Other(format!(
                "internal: {decision:?} without a link"
            ))),
        };
        let mut result = run();
        // A 400 before the server's schema was read: read it, and send once more shaped.
        if self.reshape_after_refusal(t, user, &result) {
            result = run();
        }
        self.conclude(t, user, event, link, result)
    }

    /// Finishes one user's provisioning, however its write travelled: brings its groups in
    /// line, logs the outcome, and counts the requests `t` carried for it.
    pub(crate) fn conclude(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        event: UserEvent,
        link: Option<&Link>,
        result: Result<ProvisionOutcome, ProvisioningError>,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let result = match result {
            Ok(o) => self.provision_groups(t, user, link, o),
            Err(e) => Err(e),
        };
        let requests = t.requests();
        match &result {
            Ok(o) => self.log.log(
                LogLevel::Info,
                &format!(
                    "user {} ({event:?}): {:?}{} in {requests} request(s)",
                    user.id,
                    o.action,
                    o.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            ),
            Err(e) => self.log.log(
                LogLevel::Warn,
                &format!("user {} ({event:?}) failed: {e}", user.id),
            ),
        }
        result.map(|mut o| {
            o.requests = requests;
            o
        })
    }

    /// After a user was created, adopted, updated or reactivated: bring its groups in line
    /// and record them in the new snapshot.
    fn provision_groups(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        old_link: Option<&Link>,
        mut outcome: ProvisionOutcome,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let Some(field_name) = &self.policy.groups_from else {
            return Ok(outcome);
        };
        if !matches!(
            outcome.action,
            Action::Created | Action::Adopted | Action::Updated | Action::Unchanged
        ) || !user.active
        {
            return Ok(outcome);
        }
        let Some(link) = outcome.link.as_mut() else {
            return Ok(outcome);
        };
        let previous = old_link
            .filter(|l| l.remote_id == link.remote_id)
            .and_then(|l| l.snapshot.as_deref())
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .map(|mut s| super::groups::take_snapshot_groups(&mut s))
            .unwrap_or_default();
        let desired = super::groups::desired_groups(user, field_name);
        if previous != desired {
            let caps = self.capabilities_via(t)?;
            self.sync_groups(t, &link.remote_id, &previous, &desired, &caps)?;
        }
        // The memberships are recorded in the user's snapshot, under their own key, not in a
        // field of the link: the snapshot is the opaque JSON the host keeps for us as "what
        // we last provisioned", and a new link field would change the WIT contract. See
        // `groups::SNAPSHOT_GROUPS_KEY`.
        let mut snapshot = link
            .snapshot
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .unwrap_or_else(|| json!({}));
        if let Some(o) = snapshot.as_object_mut() {
            o.insert(super::groups::SNAPSHOT_GROUPS_KEY.into(), json!(desired));
        }
        link.snapshot = Some(text::json(&snapshot));
        Ok(outcome)
    }

    /// What [`Connector::provision`] would decide for this user, event and link state.
    /// Sends nothing.
    pub fn plan(&self, user: &CmsUser, event: UserEvent, linked: bool) -> Decision {
        let situation = Situation {
            event,
            linked,
            active: user.active,
            in_scope: self.policy.mapping.in_scope(user),
        };
        decide(situation, self.policy.operations, self.policy.deprovision)
    }

    /// What [`Connector::plan`] reads of a user besides its active flag: the provisioning
    /// scope's fields, and `@id` when the scope reads the id. A host may pass `plan` only
    /// these fields, and an empty id unless `@id` is listed, and the plan is the same.
    pub fn scope_fields(&self) -> Vec<String> {
        self.policy.mapping.scope_fields()
    }

    /// The SCIM resource `user` maps to on creation. Sends nothing.
    pub fn map_user(&self, user: &CmsUser) -> Result<Value, ProvisioningError> {
        self.policy.mapping.map(user, MapMode::Create)
    }

    /// Creates the remote user, unless one already matches: then it is adopted. With
    /// `matching_look_up = "on_conflict"` the match by `userName` is the server's 409 rather
    /// than a look-up, unless `may_exist` (see [`Connector::provision_checked`]).
    fn create(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        may_exist: bool,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let resource = self.shaped(self.policy.mapping.map(user, MapMode::Create)?);
        let caps = self.capabilities_via(t)?;
        let leave_unique = self.leaves_unique_to_server() && !may_exist;
        if let Some(existing) = self.find_match(t, &resource, &caps, leave_unique)? {
            return self.adopt(t, user, existing, &caps);
        }
        match t.send(Method::Post, "/Users", Some(&resource), &[]) {
            Ok(resp) if is_success(resp.status) => {
                let body = response::require_json_body(&resp)?;
                let remote_id = id_of(&body)
                    .ok_or_else(|| response::unexpected(&resp, "the created user has no id"))?;
                let location = location_of(&resp, Some(&body));
                let version = version_of(&resp, Some(&body));
                self.remember_created(&remote_id, &resource);
                Ok(created(t, remote_id, version, location, &resource))
            }
            // Someone (another run, an admin) created it since we looked: adopt it. Where
            // the POST is what asks the server (`matching_look_up = "on_conflict"`), a 400
            // `uniqueness` says the same (RFC 7644 lists it under 400 in Table 9, though
            // §3.3 asks for 409).
            Ok(resp)
                if resp.status == 409
                    || (self.leaves_unique_to_server() && is_uniqueness_400(&resp)) =>
            {
                match self.look_up(t, &resource, &caps)? {
                    Some(existing) => self.adopt(t, user, existing, &caps),
                    None => Err(held_unlisted(
                        &resource,
                        response::error_from_response(&resp, now_unix()),
                    )),
                }
            }
            Ok(resp) => Err(response::error_from_response(&resp, now_unix())),
            // The POST may have landed; look before anyone retries it.
            Err(ProvisioningError::Transport(TransportError::Timeout)) => {
                match self.look_up(t, &resource, &caps) {
                    Ok(Some(existing)) => self.adopt(t, user, existing, &caps),
                    _ => Err(ProvisioningError::Transport(TransportError::Timeout)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A user this connector created joins its listing of the remote users, when it has
    /// one, so that a later creation of the same person (a lost link, a retried event)
    /// finds it instead of posting it again to a server that does not enforce uniqueness.
    pub(crate) fn remember_created(&self, remote_id: &str, resource: &Value) {
        if let Some(index) = self.index.borrow_mut().as_mut() {
            index.add(remote_id, resource, &self.policy.matching);
        }
    }

    /// Links an existing remote user and brings it in line.
    pub(crate) fn adopt(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        remote: Value,
        caps: &ServerCapabilities,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let (remote_id, version) = adoptable(&remote)?;
        let new = self.shaped(self.policy.mapping.map(user, MapMode::Update)?);
        let old = self.projected(&remote, &new);
        // A matched user whose immutable attributes differ keeps them; the rest is sent.
        let note = self.immutable_note(&old, &new);
        let sent = self.send_update(
            t,
            &remote_id,
            version.clone(),
            &old,
            &new,
            Some(remote),
            None,
            caps,
        )?;
        let (version, location) = match sent {
            Sent::Updated { version, location } => (version, location),
            Sent::Unchanged => (version, None),
            Sent::Missing => {
                return Err(ProvisioningError::Other(format!(
                    "the matching remote user {remote_id} disappeared while it was adopted"
                )));
            }
        };
        let adopted = ProvisionOutcome {
            location,
            ..outcome(
                Action::Adopted,
                Some(Link {
                    remote_id,
                    version,
                    snapshot: Some(text::json(&new)),
                }),
            )
        };
        Ok(match note {
            Some(note) => adopted.with_reason(note),
            None => adopted,
        })
    }

    /// Updates (or reactivates) a linked remote user.
    fn update(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        link: &Link,
        reactivate: bool,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        // Map first: a user who cannot be mapped fails before anything is sent.
        let snapshot = parse_snapshot(link);
        let new = self.update_target(user, snapshot.as_ref(), reactivate)?;
        let caps = self.capabilities_via(t)?;
        let (old, remote) = match snapshot.clone() {
            Some(s) => (s, None),
            None => match self.read(t, &link.remote_id)? {
                Some(remote) => (self.projected(&remote, &new), Some(remote)),
                None => return self.remote_missing(t, user, link),
            },
        };
        // An immutable attribute the CMS changed is not sent, and said once: the new
        // snapshot records the CMS's value, so the next call finds nothing new.
        let note = self.immutable_note(&old, &new);
        let with_note = |o: ProvisionOutcome| match &note {
            Some(n) => o.with_reason(n.clone()),
            None => o,
        };
        let result = match self.send_update(
            t,
            &link.remote_id,
            link.version.clone(),
            &old,
            &new,
            remote,
            snapshot.as_ref(),
            &caps,
        )? {
            Sent::Unchanged if note.is_some() => Ok(outcome(
                Action::Unchanged,
                Some(Link {
                    snapshot: Some(text::json(&new)),
                    ..link.clone()
                }),
            )),
            Sent::Unchanged => Ok(outcome(Action::Unchanged, Some(link.clone()))),
            Sent::Updated { version, location } => Ok(ProvisionOutcome {
                location,
                ..outcome(
                    Action::Updated,
                    Some(Link {
                        remote_id: link.remote_id.clone(),
                        version,
                        snapshot: Some(text::json(&new)),
                    }),
                )
            }),
            Sent::Missing => return self.remote_missing(t, user, link),
        };
        result.map(with_note)
    }

    /// What a linked remote user should look like after an update: the user mapped for
    /// update, with the attributes set only on creation kept as last provisioned (rather
    /// than look cleared), and `active` forced on for a reactivation.
    pub(crate) fn update_target(
        &self,
        user: &CmsUser,
        snapshot: Option<&Value>,
        reactivate: bool,
    ) -> Result<Value, ProvisioningError> {
        let mut new = self.policy.mapping.map(user, MapMode::Update)?;
        if let (Some(full), Some(prev), Some(new_obj)) = (
            self.policy.mapping.map(user, MapMode::Create).ok(),
            snapshot.and_then(Value::as_object),
            new.as_object_mut(),
        ) {
            for key in full.as_object().into_iter().flat_map(|o| o.keys()) {
                if !new_obj.contains_key(key)
                    && let Some(v) = prev.get(key)
                {
                    new_obj.insert(key.clone(), v.clone());
                }
            }
        }
        if reactivate && let Some(obj) = new.as_object_mut() {
            obj.insert("active".into(), Value::Bool(true));
        }
        Ok(self.shaped(new))
    }

    /// The linked remote user is gone: create it again, or drop the link, as configured.
    fn remote_missing(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        link: &Link,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let gone = format!("remote user {} no longer exists", link.remote_id);
        match self.policy.on_remote_missing {
            RemoteMissing::Recreate if self.policy.operations.create => {
                self.log
                    .log(LogLevel::Warn, &format!("{gone}; creating it again"));
                self.create(t, user, false)
                    .map(|o| o.with_reason(format!("{gone}; provisioned again")))
            }
            _ => Ok(outcome(Action::Unlinked, None).with_reason(gone)),
        }
    }

    /// Sets `active=false` on a linked remote user.
    fn deactivate(
        &self,
        t: &Transport<'_, H, L>,
        link: &Link,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let snapshot = parse_snapshot(link);
        if snapshot.as_ref().and_then(|s| s.get("active")) == Some(&Value::Bool(false)) {
            return Ok(outcome(Action::Unchanged, Some(link.clone()))
                .with_reason("already deactivated".into()));
        }
        let caps = self.capabilities_via(t)?;
        let (old, remote) = match snapshot.clone() {
            Some(s) if caps.patch => (s, None),
            _ => match self.read(t, &link.remote_id)? {
                Some(remote) => (remote.clone(), Some(remote)),
                None => {
                    return Ok(outcome(Action::Unlinked, None)
                        .with_reason(format!("remote user {} no longer exists", link.remote_id)));
                }
            },
        };
        let mut new = old.clone();
        if let Some(obj) = new.as_object_mut() {
            obj.insert("active".into(), Value::Bool(false));
        }
        let old_active = json!({"active": old.get("active").cloned().unwrap_or(Value::Bool(true))});
        let sent = if caps.patch {
            self.send_update(
                t,
                &link.remote_id,
                link.version.clone(),
                &old_active,
                &json!({"active": false}),
                None,
                None,
                &caps,
            )?
        } else {
            self.send_update(
                t,
                &link.remote_id,
                link.version.clone(),
                &old,
                &new,
                remote,
                None,
                &caps,
            )?
        };
        let mut snapshot = snapshot.unwrap_or_else(|| json!({}));
        if let Some(obj) = snapshot.as_object_mut() {
            obj.insert("active".into(), Value::Bool(false));
        }
        match sent {
            Sent::Missing => Ok(outcome(Action::Unlinked, None)
                .with_reason(format!("remote user {} no longer exists", link.remote_id))),
            // The server had it inactive already: remember that, or a later reactivation
            // would find nothing to change.
            Sent::Unchanged => Ok(outcome(
                Action::Unchanged,
                Some(Link {
                    snapshot: Some(text::json(&snapshot)),
                    ..link.clone()
                }),
            )),
            Sent::Updated { version, location } => Ok(ProvisionOutcome {
                location,
                ..outcome(
                    Action::Deactivated,
                    Some(Link {
                        remote_id: link.remote_id.clone(),
                        version,
                        snapshot: Some(text::json(&snapshot)),
                    }),
                )
            }),
        }
    }

    /// Deletes a linked remote user; a 404 means it is already gone, which is done too.
    fn delete(
        &self,
        t: &Transport<'_, H, L>,
        link: &Link,
    ) -> Result<ProvisionOutcome, ProvisioningError> {
        let path = resource_path("/Users", &link.remote_id)?;
        let resp = t.send(Method::Delete, &path, None, &[])?;
        if is_success(resp.status) || resp.status == 404 {
            Ok(outcome(Action::Deleted, None))
        } else {
            Err(response::error_from_response(&resp, now_unix()))
        }
    }

    /// Sends the change from `old` to `new` (through [`Connector::send_update`], which falls
    /// back to PUT when a PATCH is refused): a minimal PATCH where the server supports it,
    /// else a PUT of the remote resource with our attributes laid over it. With ETags, a
    /// 412 re-reads the resource and tries once more.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_update_as(
        &self,
        t: &Transport<'_, H, L>,
        remote_id: &str,
        version: Option<String>,
        old: &Value,
        new: &Value,
        remote: Option<Value>,
        previous: Option<&Value>,
        caps: &ServerCapabilities,
    ) -> Result<Sent, ProvisioningError> {
        let path = resource_path("/Users", remote_id)?;
        // Compared and sent without what the server will not take in an update.
        let new = &self.for_update(new);
        let previous = previous.map(|p| self.for_update(p));
        let previous = previous.as_ref();
        let mut old = self.for_update(old);
        let mut version = version;
        let mut remote = remote;
        for attempt in 0..2 {
            let resp = if caps.patch {
                let ops: Vec<PatchOperation> = diff(&old, new);
                if ops.is_empty() {
                    return Ok(Sent::Unchanged);
                }
                let body = serde_json::to_value(PatchRequest::new(ops)).map_err(|e| {
                    ProvisioningError::Other(format!("could not build the PATCH: {e}"))
                })?;
                self.send_with_version(t, Method::Patch, &path, &body, caps, version.as_deref())?
            } else {
                // Compared as a PATCH would be, so a cleared attribute counts as a change.
                if attempt == 0 && remote.is_none() && diff(&old, new).is_empty() {
                    return Ok(Sent::Unchanged);
                }
                let base = match remote.take() {
                    Some(r) => r,
                    None if self.policy.preserve_unmapped => match self.read(t, remote_id)? {
                        Some(r) => r,
                        None => return Ok(Sent::Missing),
                    },
                    None => json!({}),
                };
                if attempt == 0
                    && diff(&self.for_update(&self.projected(&base, new)), new).is_empty()
                    && previous.is_none_or(|p| diff(p, new).is_empty())
                {
                    return Ok(Sent::Unchanged);
                }
                let mut body = merge_for_put(&base, new, previous);
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("id".into(), Value::String(remote_id.to_string()));
                }
                self.send_with_version(t, Method::Put, &path, &body, caps, version.as_deref())?
            };
            match resp.status {
                s if is_success(s) => {
                    let body = response::json_body(&resp)?;
                    return Ok(Sent::Updated {
                        version: version_of(&resp, body.as_ref()),
                        location: location_of(&resp, body.as_ref()),
                    });
                }
                404 => return Ok(Sent::Missing),
                412 if attempt == 0 => {
                    // Someone changed the user since we last saw it: re-read and try again.
                    let fresh_resp = t.get(&path)?;
                    let Some(fresh) = read_resource(&fresh_resp)? else {
                        return Ok(Sent::Missing);
                    };
                    // meta.version, else the ETag header (RFC 7644 §3.14).
                    version = version_of(&fresh_resp, Some(&fresh));
                    // Project onto what we sent before as well as what we send now, so
                    // values we cleared are still removed after the re-read.
                    old = self.for_update(&self.projected(&fresh, &union_shape(&old, new)));
                    remote = Some(fresh);
                }
                _ => return Err(response::error_from_response(&resp, now_unix())),
            }
        }
        Err(ProvisioningError::Other(format!(
            "remote user {remote_id} kept changing (412 twice); try again later"
        )))
    }

    fn send_with_version(
        &self,
        t: &Transport<'_, H, L>,
        method: Method,
        path: &str,
        body: &Value,
        caps: &ServerCapabilities,
        version: Option<&str>,
    ) -> Result<HttpResponse, ProvisioningError> {
        match version.filter(|_| caps.etag) {
            Some(v) => t.send(method, path, Some(body), &[("If-Match", v)]),
            None => t.send(method, path, Some(body), &[]),
        }
    }

    /// GET a remote user: `None` on 404.
    fn read(
        &self,
        t: &Transport<'_, H, L>,
        remote_id: &str,
    ) -> Result<Option<Value>, ProvisioningError> {
        let resp = t.get(&resource_path("/Users", remote_id)?)?;
        read_resource(&resp)
    }

    /// Whether creations leave the look-up by the attributes a server must keep unique to
    /// the server's 409 (policy `matching_look_up = "on_conflict"`).
    pub(crate) fn leaves_unique_to_server(&self) -> bool {
        self.policy.matching_look_up == MatchingLookUp::OnConflict
    }

    /// Looks the user up by each matching attribute in turn. One match is returned; several
    /// are an error naming them; none moves on to the next attribute. With `leave_unique`,
    /// the attributes a server must keep unique are not looked up by filter (the listed
    /// remote users, which cost no request, are still asked): see [`Connector::look_up_as`].
    pub(crate) fn find_match(
        &self,
        t: &Transport<'_, H, L>,
        resource: &Value,
        caps: &ServerCapabilities,
        leave_unique: bool,
    ) -> Result<Option<Value>, ProvisioningError> {
        match self.find_in_index(t, resource)? {
            Some(Some(found)) => return Ok(Some(found)),
            Some(None) => match self.index_incomplete() {
                // Absent from a listing that misses users proves nothing: ask with a
                // filter where filters work, else refuse to create.
                Some(why) if self.filters_unusable(caps) => return Err(cannot_verify(&why)),
                Some(_) => {}
                None => return Ok(None),
            },
            None => {}
        }
        self.look_up_as(t, resource, caps, leave_unique)
    }

    /// What the listed remote users say of a resource, without a request: per matching
    /// attribute in order, the one candidate (its id and the value it matched on), or an
    /// error where several match. Attributes without a candidate are left out. `None` when
    /// the remote users were not listed.
    #[allow(clippy::type_complexity)]
    fn index_candidates(
        &self,
        resource: &Value,
    ) -> Option<Vec<Result<(usize, String, String), ProvisioningError>>> {
        let index = self.index.borrow();
        let index = index.as_ref()?;
        let mut out = Vec::new();
        for (i, path) in self.policy.matching.iter().enumerate() {
            let Some(value) = match_value(resource, path) else {
                continue;
            };
            match index.candidates(i, &value).as_slice() {
                [] => {}
                [id] => out.push(Ok((i, (*id).to_string(), value))),
                several => out.push(Err(self.several_match(
                    path,
                    &format!("{path} {value:?}"),
                    &several
                        .iter()
                        .map(|id| (*id).to_string())
                        .collect::<Vec<_>>(),
                ))),
            }
        }
        Some(out)
    }

    /// True when `remote` still has `value` for the `attr`-th matching attribute: what the
    /// index said must hold for the resource as it is now.
    fn still_matches(&self, remote: &Value, attr: usize, value: &str) -> bool {
        self.policy
            .matching
            .get(attr)
            .is_some_and(|p| match_value(remote, p).is_some_and(|v| v.eq_ignore_ascii_case(value)))
    }

    /// Matching against the listed remote users, when they were listed: `None` when there
    /// is no index, else what the index says (fetching the one match in full).
    #[allow(clippy::option_option)]
    pub(crate) fn find_in_index(
        &self,
        t: &Transport<'_, H, L>,
        resource: &Value,
    ) -> Result<Option<Option<Value>>, ProvisioningError> {
        let Some(candidates) = self.index_candidates(resource) else {
            return Ok(None);
        };
        for candidate in candidates {
            let (i, id, value) = candidate?;
            // The index holds only what matching needs; adoption needs it all.
            if let Some(full) = self.read(t, &id)?
                && self.still_matches(&full, i, &value)
            {
                return Ok(Some(Some(full)));
            }
        }
        Ok(Some(None))
    }

    /// Lists every remote user once, paged, and keeps what matching needs, so matching
    /// during a first sync costs no look-up per user. Says how many were listed, in how
    /// many requests.
    pub fn index_remote_users(&self) -> Result<super::index::RemoteListing, ProvisioningError> {
        let t = self.transport();
        let users = self.list_remote_users(&t)?;
        Ok(super::index::RemoteListing {
            users,
            requests: t.requests(),
        })
    }

    /// [`Connector::index_remote_users`] on `t`: says how many users were listed.
    pub(crate) fn list_remote_users(
        &self,
        t: &Transport<'_, H, L>,
    ) -> Result<u32, ProvisioningError> {
        let before = t.requests();
        let caps = self.capabilities_via(t)?;
        let page = caps.filter_max_results.unwrap_or(100).clamp(1, 1000);
        let mut attributes = vec!["id".to_string()];
        for p in &self.policy.matching {
            attributes.push(match &p.urn {
                Some(urn) if !crate::scim::attr::is_core_urn(urn) => format!("{urn}:{}", p.attr),
                _ => p.attr.clone(),
            });
        }
        let attributes = encode_component(&attributes.join(","));
        let mut start: u64 = 1;
        let mut all: Vec<Value> = Vec::new();
        let mut previous_first: Option<String> = None;
        let mut first_ids: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut incomplete: Option<String> = None;
        let limits = self.policy.listing;
        let too_many_users = || {
            ProvisioningError::Other(format!(
                "the listing stopped past {} users (policy `listing.max_users`); matching falls back to look-ups",
                limits.max_users
            ))
        };
        let mut pages: u32 = 0;
        loop {
            pages += 1;
            if pages > limits.max_pages {
                return Err(ProvisioningError::Other(format!(
                    "the listing stopped after {} pages (policy `listing.max_pages`) with the server still answering; matching falls back to look-ups",
                    limits.max_pages
                )));
            }
            let resp = self.list_get(
                t,
                &format!("/Users?startIndex={start}&count={page}&attributes={attributes}"),
            )?;
            let (resources, total) = read_list(&resp)?;
            if resources.is_empty() {
                break;
            }
            if self.dialect.borrow().paging_unusable {
                // Without paging parameters there is no next page to ask for: when the
                // answer is only a page, other ways to page are tried.
                let received = resources.len();
                all.extend(resources);
                if more_expected(received, total) {
                    incomplete = self.complete_listing(t, &attributes, &mut all, total)?;
                }
                break;
            }
            let first = resources.first().and_then(id_of);
            if first.is_some() && first == previous_first {
                return Err(ProvisioningError::Other(
                    "the server ignores startIndex, so its users cannot be listed; matching falls back to look-ups".into(),
                ));
            }
            // A page served before under another start index: the server cycles through
            // its pages, and asking on would never end.
            if let Some(f) = &first
                && !first_ids.insert(f.clone())
            {
                return Err(ProvisioningError::Other(format!(
                    "the server answered startIndex={start} with a page it had served before (first user {f}), so its users cannot be listed; matching falls back to look-ups"
                )));
            }
            previous_first = first;
            start += resources.len() as u64;
            all.extend(resources);
            if all.len() > limits.max_users as usize {
                return Err(too_many_users());
            }
            if start > total {
                break;
            }
        }
        // The other ways to page (a server that pages without parameters) add users too.
        if all.len() > limits.max_users as usize {
            return Err(too_many_users());
        }
        let mut index = super::index::RemoteIndex::build(&all, &self.policy.matching);
        index.incomplete = incomplete;
        let listed = u32::try_from(index.len()).unwrap_or(u32::MAX);
        self.log.log(
            LogLevel::Info,
            &format!(
                "listed {listed} remote users in {} request(s)",
                t.requests().saturating_sub(before)
            ),
        );
        *self.index.borrow_mut() = Some(index);
        Ok(listed)
    }

    /// The listed remote users as a document another connector (same server, same
    /// matching attributes) can load, so a host running several connectors lists once.
    /// `None` when nothing was listed.
    pub fn export_remote_index(&self) -> Option<String> {
        self.index
            .borrow()
            .as_ref()
            .map(|index| text::json(&index.to_document(&self.policy.matching)))
    }

    /// The ids of the listed remote users, in the order they were listed; empty when
    /// nothing was listed. Makes no request.
    pub fn remote_user_ids(&self) -> Vec<String> {
        self.index
            .borrow()
            .as_ref()
            .map(|index| index.ids().to_vec())
            .unwrap_or_default()
    }

    /// Loads what [`Connector::export_remote_index`] gave; returns how many remote users
    /// it holds. A document for other matching attributes is refused.
    pub fn import_remote_index(&self, document: &str) -> Result<u32, ProvisioningError> {
        let value: Value = serde_json::from_str(document).map_err(|e| {
            ProvisioningError::InvalidConfig(format!("the remote-user index is not JSON: {e}"))
        })?;
        let index = super::index::RemoteIndex::from_document(&value, &self.policy.matching)
            .map_err(|e| ProvisioningError::InvalidConfig(format!("remote-user index: {e}")))?;
        let users = u32::try_from(index.len()).unwrap_or(u32::MAX);
        *self.index.borrow_mut() = Some(index);
        Ok(users)
    }

    /// Looks the user up on the server by each matching attribute in turn.
    fn look_up(
        &self,
        t: &Transport<'_, H, L>,
        resource: &Value,
        caps: &ServerCapabilities,
    ) -> Result<Option<Value>, ProvisioningError> {
        self.look_up_as(t, resource, caps, false)
    }

    /// [`Connector::look_up`]; with `leave_unique`, the attributes a server must keep
    /// unique ([`server_unique`]) are asked only when a later attribute finds a user, so
    /// that the user adopted is the one the full look-up would pick (the first attribute in
    /// `matching` order that matches wins). A new user costs no look-up by them: its POST
    /// is the question, and a 409 looks it up by every attribute.
    pub(crate) fn look_up_as(
        &self,
        t: &Transport<'_, H, L>,
        resource: &Value,
        caps: &ServerCapabilities,
        leave_unique: bool,
    ) -> Result<Option<Value>, ProvisioningError> {
        if self.filters_unusable(caps) {
            // No filter to ask with: list the remote users and match here, so that no
            // user is ever created twice.
            return self.look_up_by_listing(t, resource);
        }
        let mut deferred: Vec<(&AttrPath, String)> = Vec::new();
        for path in &self.policy.matching {
            let Some(value) = match_value(resource, path) else {
                continue;
            };
            if leave_unique && server_unique(path) {
                deferred.push((path, value));
                continue;
            }
            let found = match self.look_up_by(t, path, &value)? {
                LookedUp::Nothing => continue,
                LookedUp::ByListing => return self.look_up_by_listing(t, resource),
                LookedUp::Found(found) => found,
            };
            // An attribute before this one, left to the server, may match someone else:
            // it takes precedence, as it would have in a full look-up.
            for (path, value) in deferred {
                match self.look_up_by(t, path, &value)? {
                    LookedUp::Nothing => {}
                    LookedUp::ByListing => return self.look_up_by_listing(t, resource),
                    LookedUp::Found(first) => return Ok(Some(first)),
                }
            }
            return Ok(Some(found));
        }
        Ok(None)
    }

    /// One look-up by one matching attribute.
    fn look_up_by(
        &self,
        t: &Transport<'_, H, L>,
        path: &AttrPath,
        value: &str,
    ) -> Result<LookedUp, ProvisioningError> {
        let mut filter = match_filter(path, value);
        let mut resp = self.search(t, &filter)?;
        if resp.status == 400
            && let Some(simple) = simple_match_filter(path, value)
        {
            // Some servers reject value-path filters; the plain form works everywhere.
            filter = simple;
            resp = self.search(t, &filter)?;
        }
        if resp.status == 400 && path.is_attr("userName") && path.urn.is_none() {
            // A server that cannot take `userName eq "x"` cannot filter at all.
            self.learn_filters_unusable(&format!("the server rejected the filter {filter}"));
            return Ok(LookedUp::ByListing);
        }
        if resp.status == 400 {
            // The server cannot evaluate this filter (SCIMMY fails on users that lack
            // the attribute); the other matching attributes and a 409 still guard
            // against duplicates.
            self.log.log(
                LogLevel::Warn,
                &format!("the server rejected the matching filter {filter}; skipping it"),
            );
            return Ok(LookedUp::Nothing);
        }
        // Check each candidate ourselves: a server that ignores the filter must not
        // make us adopt somebody else, nor make us miss the user it did not list.
        let listed = read_list(&resp)?.0;
        if path.filter.is_none() && filter_ignored(&listed, path, value) {
            self.learn_filters_unusable(&format!("the server ignored the filter {filter}"));
            return Ok(LookedUp::ByListing);
        }
        let mut found: Vec<Value> = listed
            .into_iter()
            .filter(|r| match_value(r, path).is_some_and(|v| v.eq_ignore_ascii_case(value)))
            .collect();
        match found.len() {
            0 => Ok(LookedUp::Nothing),
            1 => Ok(found.pop().map_or(LookedUp::Nothing, LookedUp::Found)),
            _ => {
                let ids: Vec<String> = found.iter().filter_map(id_of).collect();
                Err(self.several_match(path, &filter, &ids))
            }
        }
    }

    /// The error of a look-up that found several remote users. Several with one userName
    /// show a server that does not keep it unique: with `matching_look_up = "on_conflict"`
    /// such a server can be given duplicates, so that is said (in the error and the log).
    fn several_match(&self, path: &AttrPath, what: &str, ids: &[String]) -> ProvisioningError {
        let mut message = format!(
            "several remote users match {what}: {}; link one by hand",
            ids.join(", ")
        );
        if self.leaves_unique_to_server() && server_unique(path) {
            let warning = format!(
                "the server holds several users with one {path}, so it does not enforce its uniqueness: policy matching_look_up = \"on_conflict\" can create duplicates there; set it to \"before_create\""
            );
            self.log.log(LogLevel::Warn, &warning);
            message = format!("{message} ({warning})");
        }
        ProvisioningError::Other(message)
    }

    fn search(
        &self,
        t: &Transport<'_, H, L>,
        filter: &str,
    ) -> Result<HttpResponse, ProvisioningError> {
        self.list_get(
            t,
            &format!(
                "/Users?filter={}&startIndex=1&count={MATCH_PAGE}",
                encode_component(filter)
            ),
        )
    }
}

/// Whether an answer is a 400 with `scimType` `uniqueness`: a server's refusal of a value
/// another resource holds, as RFC 7644's Table 9 lists it (§3.3 asks for a 409 instead).
pub(crate) fn is_uniqueness_400(resp: &HttpResponse) -> bool {
    resp.status == 400
        && matches!(
            response::error_from_response(resp, 0),
            ProvisioningError::Scim(e) if e.scim_type.as_deref() == Some("uniqueness")
        )
}

/// What one look-up by one matching attribute found.
enum LookedUp {
    /// This one remote user.
    Found(Value),
    /// No one.
    Nothing,
    /// Filters cannot be trusted on this server: the remote users are to be listed and
    /// matched here instead.
    ByListing,
}

/// Whether every server must keep `path`'s value unique among its users: `userName`,
/// unqualified or under the core User schema, and not a value path. RFC 7643 §4.1.1
/// declares it `"uniqueness": "server"` (case-insensitively: `"caseExact": false`), and RFC
/// 7644 §3.3 makes a creation that would repeat it a 409 `uniqueness`. No other attribute a
/// policy matches on is unique by the RFCs: `externalId` and `emails` are `"none"`, and an
/// extension's uniqueness is whatever one server declares.
pub(crate) fn server_unique(path: &AttrPath) -> bool {
    path.is_attr("userName")
        && path.is_top_level()
        && path.filter.is_none()
        && path.sub_attr.is_none()
}

pub(crate) fn parse_snapshot(link: &Link) -> Option<Value> {
    link.snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(Value::is_object)
        .map(|mut s| {
            // Group memberships ride in the snapshot (why: `groups::SNAPSHOT_GROUPS_KEY`) but
            // are not user attributes, so they are taken out before anything diffs.
            super::groups::take_snapshot_groups(&mut s);
            s
        })
}

/// The error of a creation refused with 409 for a user whom no look-up shows (the whole
/// listing read, or a filter the server honours): the server holds the userName in a
/// record it does not list (a half-written row, say), so it cannot be adopted and a retry
/// meets the same 409. Permanent, with what an admin can do about it.
fn held_unlisted(resource: &Value, conflict: ProvisioningError) -> ProvisioningError {
    let ProvisioningError::Scim(mut e) = conflict else {
        return conflict;
    };
    let name = resource
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let said = e
        .detail
        .as_deref()
        .map(|d| format!(" (the server said: {d})"))
        .unwrap_or_default();
    e.detail = Some(format!(
        "the server already holds userName {name:?} but does not list it, so it cannot be adopted through SCIM; remove or repair it on the server, then Retry{said}"
    ));
    e.retry = crate::error::RetryClass::Permanent;
    ProvisioningError::Scim(e)
}

/// The id and version of a matching remote user about to be adopted.
pub(crate) fn adoptable(remote: &Value) -> Result<(String, Option<String>), ProvisioningError> {
    let remote_id = id_of(remote).ok_or_else(|| ProvisioningError::UnexpectedResponse {
        status: 200,
        reason: "a matching user has no id".into(),
        retry: crate::error::RetryClass::Permanent,
    })?;
    let version = remote
        .pointer("/meta/version")
        .and_then(Value::as_str)
        .map(String::from);
    Ok((remote_id, version))
}

/// The outcome of a creation; the location defaults to the user's URL under the base.
pub(crate) fn created<H: HttpPort, L: LogPort>(
    t: &Transport<'_, H, L>,
    remote_id: String,
    version: Option<String>,
    location: Option<String>,
    resource: &Value,
) -> ProvisionOutcome {
    let location = location
        .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
        .or_else(|| resource_path("/Users", &remote_id).ok().map(|p| t.url(&p)));
    ProvisionOutcome {
        location,
        ..outcome(
            Action::Created,
            Some(Link {
                remote_id,
                version,
                snapshot: Some(text::json(resource)),
            }),
        )
    }
}

pub(crate) fn outcome(action: Action, link: Option<Link>) -> ProvisionOutcome {
    ProvisionOutcome {
        action,
        reason: None,
        link,
        location: None,
        requests: 0,
    }
}

impl ProvisionOutcome {
    pub(crate) fn with_reason(mut self, reason: String) -> Self {
        self.reason = Some(reason);
        self
    }
}

#[cfg(test)]
#[path = "tests/engine.rs"]
mod tests;
