//! Fallbacks for the SCIM servers people actually run: PATCH refused on some paths, filters
//! unsupported or ignored, paging parameters answered with a 500, and a `/Schemas` narrower
//! than RFC 7643. Each fallback is learned once and kept in the connector's [`Dialect`],
//! which the host may store with the connection.

use serde_json::Value;

use crate::client::capabilities::ServerCapabilities;
use crate::client::response::is_success;
use crate::error::ProvisioningError;
use crate::mapping::MapMode;
use crate::ports::{HttpPort, HttpResponse, LogLevel, LogPort};
use crate::user::{CmsUser, ProvisionOutcome};

use super::connector::{Connector, read_list};
use super::dialect::{DeclaredSchema, Dialect, Mutability};
use super::resource::id_of;
use super::transport::{Transport, encode_component};
use super::verdict::{
    Sent, cannot_verify, is_mutability_refusal, is_patch_refusal, is_schema_refusal,
};

/// A userName no server holds: the filter probe of a connection test must match nothing.
const PROBE_USER_NAME: &str = "scim-provisioner-filter-probe-7f3e9c1d";

impl<H: HttpPort, L: LogPort> Connector<H, L> {
    /// `caps` as the server really behaves: PATCH off once it was refused, filters off once
    /// they were found unusable.
    pub(crate) fn with_dialect(&self, mut caps: ServerCapabilities) -> ServerCapabilities {
        let dialect = self.dialect.borrow();
        if dialect.patch_refused {
            caps.patch = false;
        }
        if dialect.filters_unusable {
            caps.filter_max_results = None;
        }
        caps
    }

    /// What the connector has learned, as a document the host keeps with the connection.
    pub fn export_dialect(&self) -> String {
        self.dialect.borrow().to_document()
    }

    /// Loads what [`Connector::export_dialect`] gave, so this connector starts out knowing.
    pub fn import_dialect(&self, document: &str) -> Result<(), ProvisioningError> {
        let dialect = Dialect::from_document(document)
            .map_err(|e| ProvisioningError::InvalidConfig(format!("server dialect: {e}")))?;
        *self.dialect.borrow_mut() = dialect;
        Ok(())
    }

    /// Sends an update as [`Connector::send_update_as`] does; when the server refuses the
    /// PATCH (501, 405, or 400 `noTarget`/`invalidPath`), sends it again as a PUT (GET, our
    /// attributes laid over the resource, PUT) and remembers, for the whole server, that
    /// updates go as PUT: a server that refuses some paths cannot be trusted with others,
    /// and PUT is the one update every SCIM server must take.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_update(
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
        let caps = self.with_dialect(caps.clone());
        match self.send_update_as(
            t,
            remote_id,
            version.clone(),
            old,
            new,
            remote.clone(),
            previous,
            &caps,
        ) {
            Err(e) if caps.patch && is_patch_refusal(&e) => {
                self.dialect.borrow_mut().patch_refused = true;
                self.log.log(
                    LogLevel::Warn,
                    &format!("the server refused a PATCH ({e}); updates go as PUT from now on"),
                );
                let put = ServerCapabilities {
                    patch: false,
                    ..caps
                };
                self.send_update_as(t, remote_id, version, old, new, remote, previous, &put)
            }
            other => other,
        }
    }

    /// GET of a list: when the server answers a request with `startIndex`/`count` with a
    /// 500 (or 501), the request is sent once more without them, and a success teaches the
    /// connector to leave them out from then on. The caller handles whatever comes back:
    /// the whole list or a page the server chose.
    pub(crate) fn list_get(
        &self,
        t: &Transport<'_, H, L>,
        relative: &str,
    ) -> Result<HttpResponse, ProvisioningError> {
        let unpaged = without_paging(relative);
        if self.dialect.borrow().paging_unusable {
            return t.get(&unpaged);
        }
        let resp = t.get(relative)?;
        if !matches!(resp.status, 500 | 501) || unpaged == relative {
            return Ok(resp);
        }
        let retry = t.get(&unpaged)?;
        if is_success(retry.status) {
            self.dialect.borrow_mut().paging_unusable = true;
            self.log.log(
                LogLevel::Warn,
                &format!(
                    "the server answers {} to a list with startIndex/count but lists without them; paging parameters are left out from now on",
                    resp.status
                ),
            );
        }
        Ok(retry)
    }

    /// Whether filters cannot be used to match: not supported, refused or ignored.
    pub(crate) fn filters_unusable(&self, caps: &ServerCapabilities) -> bool {
        self.dialect.borrow().filters_unusable
            || (caps.discovered && caps.filter_max_results.is_none())
    }

    /// Records that filters cannot be trusted, saying why, once.
    pub(crate) fn learn_filters_unusable(&self, why: &str) {
        let mut dialect = self.dialect.borrow_mut();
        if !dialect.filters_unusable {
            dialect.filters_unusable = true;
            self.log.log(
                LogLevel::Warn,
                &format!("{why}; matching lists the remote users instead"),
            );
        }
    }

    /// Matching without filters: lists the remote users afresh (paged where the server
    /// pages) and matches locally, fetching the one match in full. A fresh listing, because
    /// this runs when a creation met a conflict or a timeout, which an older listing cannot
    /// account for.
    pub(crate) fn look_up_by_listing(
        &self,
        t: &Transport<'_, H, L>,
        resource: &Value,
    ) -> Result<Option<Value>, ProvisioningError> {
        self.list_remote_users(t)?;
        match self.find_in_index(t, resource)?.flatten() {
            Some(found) => Ok(Some(found)),
            None => match self.index_incomplete() {
                Some(why) => Err(cannot_verify(&why)),
                None => Ok(None),
            },
        }
    }

    /// Why the listed remote users are known to miss some, when they are.
    pub(crate) fn index_incomplete(&self) -> Option<String> {
        self.index
            .borrow()
            .as_ref()
            .and_then(|i| i.incomplete.clone())
    }

    /// The server lists without paging parameters, and what it listed (`all`) is only a
    /// page of its choosing. Tries the other ways to page, each only while it works:
    /// `startIndex` alone, `count` alone, then `POST /Users/.search`. `None` when one of
    /// them gave the whole list (now in `all`); else why the listing stays incomplete.
    pub(crate) fn complete_listing(
        &self,
        t: &Transport<'_, H, L>,
        attributes: &str,
        all: &mut Vec<Value>,
        total: u64,
    ) -> Result<Option<String>, ProvisioningError> {
        let first = all.len();
        let mut tried = Vec::new();
        // 1. startIndex alone, from the first user not listed yet.
        let outcome = page_through(all, first as u64 + 1, total, |start| {
            t.get(&format!(
                "/Users?startIndex={start}&attributes={attributes}"
            ))
        })?;
        match outcome {
            None => return Ok(self.listing_completed("startIndex alone", all.len())),
            Some(why) => tried.push(format!("startIndex alone: {why}")),
        }
        // 2. count alone, asking for them all.
        let want = if total > all.len() as u64 {
            total
        } else {
            1000
        };
        let resp = t.get(&format!("/Users?count={want}&attributes={attributes}"))?;
        match read_list(&resp) {
            Ok((page, total_now)) => {
                let received = page.len();
                add_new(all, page);
                let total = total.max(total_now);
                let whole = if total > 0 {
                    all.len() as u64 >= total
                } else {
                    (received as u64) < want
                };
                if whole {
                    return Ok(self.listing_completed("count alone", all.len()));
                }
                tried.push(format!(
                    "count alone: {received} users of {}",
                    if total > 0 {
                        total.to_string()
                    } else {
                        "more".into()
                    }
                ));
            }
            Err(_) => tried.push(format!("count alone: HTTP {}", resp.status)),
        }
        // 3. A search request, paged in its body.
        let attrs: Vec<String> = crate::scim::uri::percent_decode(attributes, false)
            .split(',')
            .map(String::from)
            .collect();
        let outcome = page_through(all, 1, total, |start| {
            let body = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "attributes": attrs,
                "startIndex": start,
                "count": SEARCH_PAGE,
            });
            t.send(
                crate::ports::Method::Post,
                "/Users/.search",
                Some(&body),
                &[],
            )
        })?;
        match outcome {
            None => return Ok(self.listing_completed("POST /Users/.search", all.len())),
            Some(why) => tried.push(format!("POST /Users/.search: {why}")),
        }
        let why = format!(
            "the server lists {first} of its {} users without paging parameters and pages no other way ({})",
            if total > first as u64 {
                total.to_string()
            } else {
                "(more)".into()
            },
            tried.join("; ")
        );
        self.log.log(
            LogLevel::Warn,
            &format!("{why}; users not listed are never created"),
        );
        Ok(Some(why))
    }

    fn listing_completed(&self, how: &str, users: usize) -> Option<String> {
        self.log.log(
            LogLevel::Info,
            &format!("the server pages by {how}: listed all {users} users"),
        );
        None
    }

    /// Reads `/Schemas` and `/ResourceTypes` once per connector; a server without them (or
    /// with unreadable ones) gets RFC 7643's schema. True when they were read now.
    pub(crate) fn learn_schema(&self, t: &Transport<'_, H, L>) -> Result<bool, ProvisioningError> {
        if self.dialect.borrow().schema.is_some() {
            return Ok(false);
        }
        let readable = |resp: HttpResponse| -> Option<Value> {
            is_success(resp.status)
                .then(|| serde_json::from_slice::<Value>(&resp.body).ok())
                .flatten()
        };
        let declared = match readable(t.get("/Schemas")?) {
            Some(schemas) => {
                let types = readable(t.get("/ResourceTypes")?);
                DeclaredSchema::from_answers(&schemas, types.as_ref())
            }
            None => None,
        };
        if declared.is_none() {
            self.log.log(
                LogLevel::Info,
                "the server has no readable /Schemas; RFC 7643's User schema applies",
            );
        }
        self.dialect.borrow_mut().schema = Some(declared);
        Ok(true)
    }

    /// `resource` cut to the server's declared schema, once it is known; each attribute
    /// left out is named in one warning per connector.
    pub(crate) fn shaped(&self, resource: Value) -> Value {
        let mut left_out = Vec::new();
        let shaped = match self.dialect.borrow().declared() {
            Some(schema) => schema.shape(&resource, &mut left_out),
            None => return resource,
        };
        for path in left_out {
            if self.dialect.borrow_mut().warned.insert(path.clone()) {
                self.log.log(
                    LogLevel::Warn,
                    &format!("the server's schema does not declare {path}; it is left out of what is sent"),
                );
            }
        }
        // Read-only attributes are the server's to set (RFC 7643 §7): never sent.
        let mut read_only = Vec::new();
        let shaped = match self.dialect.borrow().declared() {
            Some(schema) => schema.without(&shaped, |m| m == Mutability::ReadOnly, &mut read_only),
            None => shaped,
        };
        for path in read_only {
            if self
                .dialect
                .borrow_mut()
                .warned
                .insert(format!("readOnly {path}"))
            {
                self.log.log(
                    LogLevel::Warn,
                    &format!("the server's schema marks {path} read-only; it is never sent"),
                );
            }
        }
        shaped
    }

    /// `value` as an update compares and sends it: without what the server will not take
    /// in an update (read-only and immutable attributes, RFC 7643 §7).
    pub(crate) fn for_update(&self, value: &Value) -> Value {
        match self.dialect.borrow().declared() {
            Some(schema) => schema.without(
                value,
                |m| matches!(m, Mutability::ReadOnly | Mutability::Immutable),
                &mut Vec::new(),
            ),
            None => value.clone(),
        }
    }

    /// `remote` projected onto `new`'s shape, with `new`'s write-only values where the
    /// server returned none (it never does), so they are never compared with it.
    pub(crate) fn projected(&self, remote: &Value, new: &Value) -> Value {
        let mut old = super::resource::project(remote, new);
        if let Some(schema) = self.dialect.borrow().declared() {
            schema.fill_unreturned(&mut old, new);
        }
        old
    }

    /// When `new` changes an immutable attribute from what `old` holds: the reason that
    /// says so, for the outcome. The change is not sent; the link's snapshot records the
    /// CMS's value, so the next call sees nothing new and says it once per change.
    pub(crate) fn immutable_note(&self, old: &Value, new: &Value) -> Option<String> {
        let dialect = self.dialect.borrow();
        let changes = dialect.declared()?.immutable_changes(old, new);
        if changes.is_empty() {
            return None;
        }
        let parts: Vec<String> = changes
            .into_iter()
            .map(|(path, was)| match was {
                Some(Value::String(s)) => {
                    format!("{path} cannot change on this server (immutable); it stays {s:?} there")
                }
                Some(v) => format!(
                    "{path} cannot change on this server (immutable); it stays {} there",
                    crate::scim::text::json(&v)
                ),
                None => format!("{path} cannot be set after creation on this server (immutable)"),
            })
            .collect();
        Some(format!(
            "{}; the other changes are sent, and the link keeps the CMS's value so this is not reported again",
            parts.join("; ")
        ))
    }

    /// After a write was refused with a 400 before the server's schema was read: reads it,
    /// and says whether the user's payload changes when shaped to it, so the write is worth
    /// sending once more. Costs nothing on servers that take what we send.
    pub(crate) fn reshape_after_refusal(
        &self,
        t: &Transport<'_, H, L>,
        user: &CmsUser,
        result: &Result<ProvisionOutcome, ProvisioningError>,
    ) -> bool {
        let refused = result
            .as_ref()
            .err()
            .is_some_and(|e| is_schema_refusal(e) || is_mutability_refusal(e));
        if !refused || !matches!(self.learn_schema(t), Ok(true)) {
            return false;
        }
        let Ok(mapped) = self.policy.mapping.map(user, MapMode::Create) else {
            return false;
        };
        let dialect = self.dialect.borrow();
        let Some(schema) = dialect.declared() else {
            return false;
        };
        schema.shape(&mapped, &mut Vec::new()) != mapped
            || schema.declares(|m| m != Mutability::ReadWrite)
    }

    /// After an operation inside a bulk answer was refused with a 400 that may be about
    /// undeclared attributes: reads the server's schema (once per connector) and says
    /// whether `sent` (the resource created, or the one an update aims at) changes when
    /// shaped to it, so the user is worth sending once more on the one-user path, which
    /// shapes what it sends.
    pub(crate) fn reshape_after_bulk_refusal(
        &self,
        t: &Transport<'_, H, L>,
        sent: &Value,
        error: &ProvisioningError,
    ) -> bool {
        let mutability = is_mutability_refusal(error);
        if !(is_schema_refusal(error) || mutability) || self.learn_schema(t).is_err() {
            return false;
        }
        let dialect = self.dialect.borrow();
        dialect.declared().is_some_and(|schema| {
            schema.shape(sent, &mut Vec::new()) != *sent
                || (mutability && schema.declares(|m| m != Mutability::ReadWrite))
        })
    }

    /// What a connection test learns beyond `/ServiceProviderConfig`: the server's schema
    /// (and what of the mapping it lacks or requires), and whether filters are honoured,
    /// probed with a filter that must match nothing. Returns one line per finding.
    pub(crate) fn learn_at_test(
        &self,
        t: &Transport<'_, H, L>,
        caps: &ServerCapabilities,
    ) -> Result<Vec<String>, ProvisioningError> {
        let mut findings = Vec::new();
        self.dialect.borrow_mut().schema = None;
        self.learn_schema(t)?;
        let targets = self.policy.mapping.targets();
        match self.dialect.borrow().declared() {
            Some(schema) => {
                for target in schema.undeclared_targets(&targets) {
                    findings.push(format!("not declared by the server, left out: {target}"));
                }
                for attr in schema.unfilled_required(&targets) {
                    findings.push(format!(
                        "required by the server, not filled by the mapping: {attr}"
                    ));
                }
            }
            None => findings.push("schema: RFC 7643 (no readable /Schemas)".into()),
        }
        if caps.discovered && caps.filter_max_results.is_none() {
            self.dialect.borrow_mut().filters_unusable = true;
            findings.push("filters: not supported; matching lists the remote users".into());
        } else {
            let probe = format!(
                "/Users?filter={}&startIndex=1&count=1",
                encode_component(&format!("userName eq \"{PROBE_USER_NAME}\""))
            );
            let resp = self.list_get(t, &probe)?;
            let honoured = match read_list(&resp) {
                Ok((resources, total)) => resources.is_empty() && total == 0,
                Err(_) => false,
            };
            self.dialect.borrow_mut().filters_unusable = !honoured;
            findings.push(if honoured {
                "filters: honoured".into()
            } else if is_success(resp.status) {
                "filters: ignored (a filter that matches nobody listed users); matching lists the remote users".into()
            } else {
                format!(
                    "filters: refused (HTTP {}); matching lists the remote users",
                    resp.status
                )
            });
        }
        let dialect = self.dialect.borrow();
        if dialect.paging_unusable {
            findings.push("paging: startIndex/count fail; lists are read without them".into());
        }
        findings.push(match (caps.patch, dialect.patch_refused) {
            (true, false) => "PATCH: advertised; refusals fall back to PUT".into(),
            (true, true) => "PATCH: advertised but refused; updates go as PUT".into(),
            (false, _) => "PATCH: not advertised; updates go as PUT".into(),
        });
        Ok(findings)
    }
}

/// Users a search request asks for at once.
const SEARCH_PAGE: u64 = 100;

/// The most pages one way to page may take (a guard against a server that never ends).
const MAX_PAGES: u32 = 10_000;

/// Adds the users of `page` not in `all` yet (by id); says how many were new.
fn add_new(all: &mut Vec<Value>, page: Vec<Value>) -> usize {
    let seen: std::collections::HashSet<String> = all.iter().filter_map(id_of).collect();
    let before = all.len();
    let mut added = std::collections::HashSet::new();
    all.extend(
        page.into_iter()
            .filter(|r| id_of(r).is_some_and(|id| !seen.contains(&id) && added.insert(id))),
    );
    all.len() - before
}

/// Pages through a list with `fetch(startIndex)` from `start`, then adds to `all` the users
/// it does not hold yet. `None` when the list was read to its end and `all` now holds
/// `totalResults` users; else why this way does not page (an error status, a start index
/// that is ignored, a list that ends early).
fn page_through(
    all: &mut Vec<Value>,
    start: u64,
    total: u64,
    fetch: impl Fn(u64) -> Result<HttpResponse, ProvisioningError>,
) -> Result<Option<String>, ProvisioningError> {
    let mut got: Vec<Value> = Vec::new();
    // From past the first page: a server that ignores startIndex answers that page again.
    let mut previous_first = if start > 1 {
        all.first().and_then(id_of)
    } else {
        None
    };
    let (mut start, mut total) = (start, total);
    let mut pages = 0;
    loop {
        pages += 1;
        if pages > MAX_PAGES {
            return Ok(Some("too many pages".into()));
        }
        let resp = fetch(start)?;
        let Ok((page, total_now)) = read_list(&resp) else {
            return Ok(Some(format!("HTTP {}", resp.status)));
        };
        total = total.max(total_now);
        if page.is_empty() {
            break;
        }
        let first = page.first().and_then(id_of);
        if first.is_some() && first == previous_first {
            return Ok(Some("the start index is ignored".into()));
        }
        previous_first = first;
        start = start.saturating_add(page.len() as u64);
        got.extend(page);
        if total > 0 && start > total {
            break;
        }
    }
    add_new(all, got);
    Ok((total > all.len() as u64).then(|| format!("ended after {} of {total} users", all.len())))
}

/// `relative` without its `startIndex` and `count` query parameters.
pub(crate) fn without_paging(relative: &str) -> String {
    let Some((path, query)) = relative.split_once('?') else {
        return relative.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("startIndex") && !name.eq_ignore_ascii_case("count")
        })
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
#[path = "tests/quirks.rs"]
mod tests;

#[cfg(test)]
#[path = "tests/mutability.rs"]
mod mutability_tests;
