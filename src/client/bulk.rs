//! Provisioning many users at once. Where the server advertises `/Bulk`, the users' writes
//! (creations, PATCHes, deletions) travel together in BulkRequests chunked by the server's
//! `maxOperations` and `maxPayloadSize`; what must be read first (matching look-ups) is read
//! first, one user at a time, exactly as [`Connector::provision`] would.
//!
//! Whatever a bulk answer leaves uncertain goes through [`Connector::provision`] on its own:
//! an operation the server did not report, a creation that met a conflict (409: adopt
//! instead), a stale version (412: re-read), a user gone from the server (404). That path
//! matches before it creates, so a lost or partial bulk answer never duplicates a user: a
//! creation that may have landed, or met a 409, is looked up there by every matching
//! attribute, even under `matching_look_up = "on_conflict"` (which otherwise leaves the
//! look-up by `userName` to the server's 409; see `policy::MatchingLookUp`).

use std::cell::Cell;

use serde_json::{Value, json};

use super::bulk_wire::{self, BulkOperation, BulkResult};
use super::capabilities::{BulkLimits, ServerCapabilities};
use super::response::{self, is_success};
use crate::error::{ProvisioningError, TransportError};
use crate::mapping::MapMode;
use crate::ports::{HttpPort, HttpResponse, LogLevel, LogPort, Method};
use crate::scim::patch::{PatchRequest, diff};
use crate::scim::text;
use crate::user::{Action, CmsUser, Link, ProvisionOutcome, UserEvent};

use super::connector::Connector;
use super::engine::{adoptable, created, outcome, parse_snapshot};
use super::resource::id_of;
use super::selection::Decision;
use super::transport::{Transport, now_unix, resource_path};
use super::verdict::is_patch_refusal;

/// The bulk operation path of a linked user. `prepare` has refused links whose id is empty
/// or a dot-segment, so this cannot fall back; an empty path would only be refused by the
/// server.
fn users_path(link: &Link) -> String {
    resource_path("/Users", &link.remote_id).unwrap_or_default()
}

/// One user to provision in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// The user.
    pub user: CmsUser,
    /// What happened to it.
    pub event: UserEvent,
    /// What the host stored after the last call for this user.
    pub link: Option<Link>,
}

/// What a batch call did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    /// One result per item, in the items' order. An outcome's `requests` counts the
    /// requests made for that user alone (look-ups, group changes, single writes).
    pub results: Vec<Result<ProvisionOutcome, ProvisioningError>>,
    /// Every request the call made, bulk requests and discovery included.
    pub requests: u32,
    /// How many of them were BulkRequests.
    pub bulk_requests: u32,
}

/// How a bulk operation's result becomes the user's outcome.
enum Finish {
    /// A POST of this resource.
    Create { resource: Value },
    /// A PATCH of a linked user; the snapshot to remember and the action to report.
    Change {
        link: Link,
        snapshot: Value,
        action: Action,
    },
    /// A DELETE.
    Delete,
}

/// A write waiting for its bulk request.
struct Pending {
    item: usize,
    operation: BulkOperation,
    finish: Finish,
    /// The requests already made for this user (look-ups).
    requests: u32,
}

/// What a user needs after the reads.
enum Prepared {
    /// Decided (or failed) already.
    Done(Result<ProvisionOutcome, ProvisioningError>),
    /// A write that can travel in a bulk request.
    Write(Pending),
    /// Needs the one-user path (reads before its write, PUT servers, …).
    Single,
}

/// How a matched remote user is adopted.
enum Adoption {
    /// This PATCH brings it in line; the link (and snapshot) it leaves.
    Write(Link, Value, BulkOperation),
    /// It is in line already.
    Unchanged(Link),
    /// The one-user path adopts it (a server without PATCH gets a merged PUT).
    Single(Value),
}

/// The whole bulk request did not come back with results.
enum ChunkFailure {
    /// The server did not take it, so nothing in it happened: this error for each user.
    NotApplied(ProvisioningError),
    /// It may have been applied in part, or bulk does not work here: each user goes
    /// through the one-user path.
    Uncertain,
}

impl<H: HttpPort, L: LogPort> Connector<H, L> {
    /// Provisions several users, writing through `/Bulk` where the server supports it.
    /// Users are independent: each gets its own result, in order, and one user's failure
    /// does not stop the others. Never sends two changes for one user in one request, so
    /// pass each user at most once per call.
    pub fn provision_batch(&self, items: &[BatchItem]) -> BatchOutcome {
        let t = self.transport();
        let mut per_user_requests = 0u32;
        let caps = match self.capabilities_via(&t) {
            Ok(caps) => caps,
            Err(e) => {
                return BatchOutcome {
                    results: items.iter().map(|_| Err(e.clone())).collect(),
                    requests: t.requests(),
                    bulk_requests: 0,
                };
            }
        };
        // The batch's group membership changes go together at its end, each group's in
        // chunks, rather than one request per user and group.
        self.defer_memberships();
        // One user gains nothing from a bulk request's envelope.
        let limits = caps
            .bulk
            .filter(|b| b.max_operations > 1 && items.len() > 1 && !self.bulk_unusable.get());
        let mut results: Vec<Option<Result<ProvisionOutcome, ProvisioningError>>> =
            items.iter().map(|_| None).collect();
        let mut pending: Vec<Pending> = Vec::new();
        // Users for the one-user path, each with whether a creation of it may be on the
        // server already (see `Connector::provision_checked`).
        let mut single: Vec<(usize, bool)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if limits.is_none() {
                single.push((i, false));
                continue;
            }
            let ut = self.transport();
            match self.prepare(&ut, i, item, &caps) {
                Prepared::Done(result) => {
                    results[i] = Some(self.conclude(
                        &ut,
                        &item.user,
                        item.event,
                        item.link.as_ref(),
                        result,
                    ));
                    per_user_requests = per_user_requests.saturating_add(ut.requests());
                }
                Prepared::Write(p) => {
                    per_user_requests = per_user_requests.saturating_add(p.requests);
                    pending.push(p);
                }
                Prepared::Single => {
                    per_user_requests = per_user_requests.saturating_add(ut.requests());
                    single.push((i, false));
                }
            }
        }
        let bulk_requests = Cell::new(0u32);
        if let Some(limits) = limits
            && !pending.is_empty()
        {
            for (finished, retry) in self.send_bulk(&t, pending, limits, &bulk_requests) {
                for (p, result) in finished {
                    let item = &items[p.item];
                    let ut = self.transport();
                    let concluded =
                        self.conclude(&ut, &item.user, item.event, item.link.as_ref(), result);
                    per_user_requests = per_user_requests.saturating_add(ut.requests());
                    results[p.item] = Some(concluded.map(|mut o| {
                        o.requests = o.requests.saturating_add(p.requests);
                        o
                    }));
                }
                single.extend(retry);
            }
        }
        single.sort_unstable();
        for (i, may_exist) in single {
            let item = &items[i];
            // Counted whatever the result: a failed user's requests were made all the same.
            let ut = self.transport();
            let result =
                self.provision_checked(&ut, &item.user, item.event, item.link.as_ref(), may_exist);
            per_user_requests = per_user_requests.saturating_add(ut.requests());
            results[i] = Some(result);
        }
        let failed = self.flush_memberships(&t, &caps);
        if !failed.is_empty() {
            // A user whose membership change failed has failed: its snapshot, which records
            // its groups, is not kept, so the next attempt sends the change again.
            for result in results.iter_mut().flatten() {
                let error = match result {
                    Ok(o) => o
                        .link
                        .as_ref()
                        .and_then(|l| failed.get(&l.remote_id))
                        .cloned(),
                    Err(_) => None,
                };
                if let Some(error) = error {
                    *result = Err(error);
                }
            }
        }
        BatchOutcome {
            results: results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| {
                        Err(ProvisioningError::Other(
                            "internal: the batch lost a user".into(),
                        ))
                    })
                })
                .collect(),
            requests: t.requests().saturating_add(per_user_requests),
            bulk_requests: bulk_requests.get(),
        }
    }

    /// Decides one user's write, making the reads it needs first.
    fn prepare(
        &self,
        t: &Transport<'_, H, L>,
        index: usize,
        item: &BatchItem,
        caps: &ServerCapabilities,
    ) -> Prepared {
        let user = &item.user;
        let link = item.link.as_ref();
        let pending = |operation, finish| {
            Prepared::Write(Pending {
                item: index,
                operation,
                finish,
                requests: t.requests(),
            })
        };
        let decision = self.plan(user, item.event, link.is_some());
        // A stored link whose id cannot name a resource fails here, before any operation
        // is built on its path.
        if !matches!(decision, Decision::Skip(_))
            && let Some(link) = link
            && let Err(e) = resource_path("/Users", &link.remote_id)
        {
            return Prepared::Done(Err(e));
        }
        match (decision, link) {
            (Decision::Skip(reason), _) => {
                Prepared::Done(Ok(
                    outcome(Action::Skipped, link.cloned()).with_reason(reason.to_string())
                ))
            }
            (Decision::Create, _) => {
                let resource = match self
                    .policy
                    .mapping
                    .map(user, MapMode::Create)
                    .map(|r| self.shaped(r))
                {
                    Ok(r) => r,
                    Err(e) => return Prepared::Done(Err(e)),
                };
                match self.find_match(t, &resource, caps, self.leaves_unique_to_server()) {
                    Ok(Some(existing)) => match self.adoption(user, existing, caps) {
                        Ok(Adoption::Write(link, new, operation)) => pending(
                            operation,
                            Finish::Change {
                                link,
                                snapshot: new,
                                action: Action::Adopted,
                            },
                        ),
                        Ok(Adoption::Unchanged(link)) => {
                            Prepared::Done(Ok(outcome(Action::Adopted, Some(link))))
                        }
                        Ok(Adoption::Single(existing)) => {
                            Prepared::Done(self.adopt(t, user, existing, caps))
                        }
                        Err(e) => Prepared::Done(Err(e)),
                    },
                    Ok(None) => pending(
                        BulkOperation {
                            method: "POST",
                            bulk_id: Some(format!("u{index}")),
                            path: "/Users".into(),
                            version: None,
                            data: Some(resource.clone()),
                        },
                        Finish::Create { resource },
                    ),
                    Err(e) => Prepared::Done(Err(e)),
                }
            }
            (decision @ (Decision::Update | Decision::Reactivate), Some(link)) => {
                let snapshot = parse_snapshot(link);
                let new = match self.update_target(
                    user,
                    snapshot.as_ref(),
                    decision == Decision::Reactivate,
                ) {
                    Ok(new) => new,
                    Err(e) => return Prepared::Done(Err(e)),
                };
                // Without a snapshot the remote user is read first, and a PUT server gets
                // the merged resource: both are the one-user path's work.
                let (Some(old), true) = (snapshot, caps.patch) else {
                    return Prepared::Single;
                };
                // An immutable attribute changed: the one-user path says so in its outcome.
                if self.immutable_note(&old, &new).is_some() {
                    return Prepared::Single;
                }
                match self.patch_operation(link, &old, &new, caps) {
                    None => Prepared::Done(Ok(outcome(Action::Unchanged, Some(link.clone())))),
                    Some(operation) => pending(
                        operation,
                        Finish::Change {
                            link: link.clone(),
                            snapshot: new,
                            action: Action::Updated,
                        },
                    ),
                }
            }
            (Decision::Deactivate, Some(link)) => {
                let snapshot = parse_snapshot(link);
                let (Some(mut snapshot), true) = (snapshot, caps.patch) else {
                    return Prepared::Single;
                };
                let was = snapshot.get("active").cloned().unwrap_or(Value::Bool(true));
                if was == Value::Bool(false) {
                    return Prepared::Done(Ok(outcome(Action::Unchanged, Some(link.clone()))
                        .with_reason("already deactivated".into())));
                }
                if let Some(o) = snapshot.as_object_mut() {
                    o.insert("active".into(), Value::Bool(false));
                }
                match self.patch_operation(
                    link,
                    &json!({"active": was}),
                    &json!({"active": false}),
                    caps,
                ) {
                    None => Prepared::Single,
                    Some(operation) => pending(
                        operation,
                        Finish::Change {
                            link: link.clone(),
                            snapshot,
                            action: Action::Deactivated,
                        },
                    ),
                }
            }
            (Decision::Delete, Some(link)) => pending(
                BulkOperation {
                    method: "DELETE",
                    bulk_id: None,
                    path: users_path(link),
                    version: None,
                    data: None,
                },
                Finish::Delete,
            ),
            (decision, None) => Prepared::Done(Err(ProvisioningError::Other(format!(
                "internal: {decision:?} without a link"
            )))),
        }
    }

    /// How an existing remote user is adopted: the PATCH that brings it in line (and the
    /// link and snapshot it leaves), nothing when it is in line already, or the one-user
    /// path for a server without PATCH.
    fn adoption(
        &self,
        user: &CmsUser,
        remote: Value,
        caps: &ServerCapabilities,
    ) -> Result<Adoption, ProvisioningError> {
        if !caps.patch {
            return Ok(Adoption::Single(remote));
        }
        let (remote_id, version) = adoptable(&remote)?;
        let new = self.shaped(self.policy.mapping.map(user, MapMode::Update)?);
        let old = self.projected(&remote, &new);
        if self.immutable_note(&old, &new).is_some() {
            return Ok(Adoption::Single(remote));
        }
        let link = Link {
            remote_id,
            version,
            snapshot: Some(text::json(&new)),
        };
        Ok(match self.patch_operation(&link, &old, &new, caps) {
            None => Adoption::Unchanged(link),
            Some(operation) => Adoption::Write(link, new, operation),
        })
    }

    /// The PATCH from `old` to `new` as a bulk operation; `None` when nothing differs.
    fn patch_operation(
        &self,
        link: &Link,
        old: &Value,
        new: &Value,
        caps: &ServerCapabilities,
    ) -> Option<BulkOperation> {
        // Without what the server will not take in an update, as the one-user path sends.
        let ops = diff(&self.for_update(old), &self.for_update(new));
        if ops.is_empty() {
            return None;
        }
        Some(BulkOperation {
            method: "PATCH",
            bulk_id: None,
            path: users_path(link),
            version: link.version.clone().filter(|_| caps.etag),
            data: serde_json::to_value(PatchRequest::new(ops)).ok(),
        })
    }

    /// Sends the pending writes in chunks. For each chunk: the users it finished, with
    /// their results, and the users that must go through the one-user path, each with
    /// whether a creation of it may have reached the server (a POST sent whose result is a
    /// 409, missing, or unreadable).
    #[allow(clippy::type_complexity)]
    fn send_bulk(
        &self,
        t: &Transport<'_, H, L>,
        pending: Vec<Pending>,
        limits: BulkLimits,
        bulk_requests: &Cell<u32>,
    ) -> Vec<(
        Vec<(Pending, Result<ProvisionOutcome, ProvisioningError>)>,
        Vec<(usize, bool)>,
    )> {
        let wire: Vec<Value> = pending.iter().map(|p| p.operation.to_json()).collect();
        let lengths: Vec<usize> = wire.iter().map(|w| text::json(w).len()).collect();
        let (chunks, too_large) =
            bulk_wire::chunk(&lengths, limits.max_operations, limits.max_payload_size);
        let mut slots: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
        let mut wire: Vec<Option<Value>> = wire.into_iter().map(Some).collect();
        let mut out = Vec::new();
        // Never sent.
        let too_large: Vec<(usize, bool)> = too_large
            .into_iter()
            .filter_map(|i| {
                slots
                    .get_mut(i)
                    .and_then(Option::take)
                    .map(|p| (p.item, false))
            })
            .collect();
        out.push((Vec::new(), too_large));
        for chunk in chunks {
            let members: Vec<Pending> = chunk
                .iter()
                .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
                .collect();
            let body = bulk_wire::request_body(
                chunk
                    .iter()
                    .filter_map(|&i| wire.get_mut(i).and_then(Option::take))
                    .collect(),
            );
            if self.bulk_unusable.get() {
                out.push((
                    Vec::new(),
                    members.iter().map(|p| (p.item, false)).collect(),
                ));
                continue;
            }
            bulk_requests.set(bulk_requests.get().saturating_add(1));
            match self.send_chunk(t, &members, &body) {
                Ok(results) => {
                    let sent: Vec<BulkOperation> =
                        members.iter().map(|p| p.operation.clone()).collect();
                    let matched = bulk_wire::match_results(&sent, results);
                    let mut finished = Vec::new();
                    let mut retry = Vec::new();
                    for (p, result) in members.into_iter().zip(matched) {
                        match self.finish(t, &p, result) {
                            Some(r) => finished.push((p, r)),
                            None => {
                                let created_maybe = p.operation.method == "POST";
                                if created_maybe {
                                    self.forget_index();
                                }
                                retry.push((p.item, created_maybe));
                            }
                        }
                    }
                    out.push((finished, retry));
                }
                Err(ChunkFailure::NotApplied(e)) => out.push((
                    members.into_iter().map(|p| (p, Err(e.clone()))).collect(),
                    Vec::new(),
                )),
                Err(ChunkFailure::Uncertain) => {
                    self.forget_index();
                    out.push((
                        Vec::new(),
                        members
                            .iter()
                            .map(|p| (p.item, p.operation.method == "POST"))
                            .collect(),
                    ));
                }
            }
        }
        out
    }

    /// Sends one BulkRequest and reads its results.
    fn send_chunk(
        &self,
        t: &Transport<'_, H, L>,
        members: &[Pending],
        body: &Value,
    ) -> Result<Vec<BulkResult>, ChunkFailure> {
        let resp = match t.send(Method::Post, "/Bulk", Some(body), &[]) {
            Ok(resp) => resp,
            // The request may have been carried out before the answer was lost.
            Err(ProvisioningError::Transport(
                TransportError::Timeout | TransportError::Other(_),
            )) => {
                return Err(ChunkFailure::Uncertain);
            }
            Err(e) => return Err(ChunkFailure::NotApplied(e)),
        };
        self.log.log(
            LogLevel::Debug,
            &format!(
                "the bulk request carried {} operations (HTTP {})",
                members.len(),
                resp.status
            ),
        );
        match resp.status {
            s if is_success(s) => {}
            // No /Bulk after all, or a limit the server did not advertise: stop using it.
            404 | 405 | 413 | 501 => {
                self.log.log(
                    LogLevel::Warn,
                    &format!(
                        "the server advertises /Bulk but answered {}; sending one request per user",
                        resp.status
                    ),
                );
                self.bulk_unusable.set(true);
                return Err(ChunkFailure::Uncertain);
            }
            _ => {
                return Err(ChunkFailure::NotApplied(response::error_from_response(
                    &resp,
                    now_unix(),
                )));
            }
        }
        let parsed = response::require_json_body(&resp).and_then(|body| {
            bulk_wire::parse_response(&body).map_err(|reason| response::unexpected(&resp, &reason))
        });
        match parsed {
            Ok(results) => Ok(results),
            Err(e) => {
                self.log.log(
                    LogLevel::Warn,
                    &format!(
                        "the bulk answer could not be read ({e}); checking each user on its own"
                    ),
                );
                Err(ChunkFailure::Uncertain)
            }
        }
    }

    /// One operation's result as the user's outcome; `None` when the one-user path must
    /// settle it.
    fn finish(
        &self,
        t: &Transport<'_, H, L>,
        p: &Pending,
        result: Option<BulkResult>,
    ) -> Option<Result<ProvisionOutcome, ProvisioningError>> {
        let result = result?;
        let body = result.response.clone();
        if is_success(result.status) {
            return match &p.finish {
                Finish::Create { resource } => {
                    let remote_id = body
                        .as_ref()
                        .and_then(id_of)
                        .or_else(|| result.location_id())?;
                    let version = result_version(&result, body.as_ref());
                    self.remember_created(&remote_id, resource);
                    Some(Ok(created(
                        t,
                        remote_id,
                        version,
                        result.location.clone(),
                        resource,
                    )))
                }
                Finish::Change {
                    link,
                    snapshot,
                    action,
                } => Some(Ok(ProvisionOutcome {
                    location: result
                        .location
                        .clone()
                        .filter(|l| l.starts_with("http://") || l.starts_with("https://")),
                    ..outcome(
                        *action,
                        Some(Link {
                            remote_id: link.remote_id.clone(),
                            version: result_version(&result, body.as_ref()),
                            snapshot: Some(text::json(snapshot)),
                        }),
                    )
                })),
                Finish::Delete => Some(Ok(outcome(Action::Deleted, None))),
            };
        }
        match (&p.finish, result.status) {
            (Finish::Delete, 404) => Some(Ok(outcome(Action::Deleted, None))),
            // Conflict: adopt. Stale version: re-read. Gone: re-create or unlink. A server
            // busy or failing: the one-user path carries its own retry class.
            (Finish::Create { .. }, 409) | (Finish::Change { .. }, 404 | 412) => None,
            (_, status) => {
                let synthetic = HttpResponse {
                    status,
                    headers: vec![("Content-Type".into(), "application/scim+json".into())],
                    body: body
                        .map(|b| text::json(&b).into_bytes())
                        .unwrap_or_default(),
                };
                // A creation refused as a taken value, where the POST is what asks the
                // server: the one-user path looks the user up and adopts, as after a 409.
                if matches!(p.finish, Finish::Create { .. })
                    && self.leaves_unique_to_server()
                    && super::engine::is_uniqueness_400(&synthetic)
                {
                    return None;
                }
                let error = response::error_from_response(&synthetic, now_unix());
                // A refused PATCH goes as PUT on the one-user path.
                if matches!(p.finish, Finish::Change { .. }) && is_patch_refusal(&error) {
                    self.dialect.borrow_mut().patch_refused = true;
                    return None;
                }
                // A first 400 for attributes the server does not declare: its schema is
                // read, and the one-user path sends the user again shaped to it.
                let sent = match &p.finish {
                    Finish::Create { resource } => Some(resource),
                    Finish::Change { snapshot, .. } => Some(snapshot),
                    Finish::Delete => None,
                };
                if sent.is_some_and(|sent| self.reshape_after_bulk_refusal(t, sent, &error)) {
                    return None;
                }
                Some(Err(error))
            }
        }
    }

    /// After a bulk answer left a creation uncertain, matching must ask the server, not the
    /// index listed before the creation.
    fn forget_index(&self) {
        *self.index.borrow_mut() = None;
    }
}

/// The resource's new version: the operation's `version`, else the `meta.version` of a
/// resource the server returned with it.
fn result_version(result: &BulkResult, body: Option<&Value>) -> Option<String> {
    result.version.clone().or_else(|| {
        body.and_then(|b| b.pointer("/meta/version"))
            .and_then(Value::as_str)
            .map(String::from)
    })
}

#[cfg(test)]
#[path = "tests/bulk.rs"]
mod tests;
