//! [`ScimServer`]: answers one SCIM request (RFC 7644 §3) from the [`Directory`].
//!
//! Every answer is SCIM: success bodies and error bodies alike are
//! `application/scim+json`, and no input, however malformed, makes it panic.

use serde_json::Value;

use crate::ports::{
    Directory, DirectoryError, LogLevel, LogPort, Query, ResourceKind, StoredResource,
};
use crate::scim::attr::AttrName;
use crate::scim::filter::Filter;
use crate::scim::patch::{PatchErrorKind, PatchRequest};
use crate::scim::path::AttrPath;
use crate::server::auth::authenticate;
use crate::server::config::ServerConfig;
use crate::server::discovery;
use crate::server::error::ScimError;
use crate::server::etag::{self, etag};
use crate::server::http::{QueryParams, ServerRequest, ServerResponse, header};
use crate::server::list::{ListRequest, list_response};
use crate::server::projection::{Projection, split_names};
use crate::server::resource::{self, group_ref, location};
use crate::server::routes::Route;
use crate::server::validate::{SchemasRule, validate};

/// A SCIM 2.0 service provider over a [`Directory`].
pub struct ScimServer<D: Directory> {
    directory: D,
    config: ServerConfig,
    log: Box<dyn LogPort>,
    /// The directory declared that it hashes passwords (the policy's
    /// `directory.hashes_passwords`); without it, no `password` is handed to it.
    directory_hashes_passwords: bool,
}

/// The log of a server given none.
struct NoLog;

impl LogPort for NoLog {
    fn log(&self, _level: LogLevel, _message: &str) {}
}

/// How often a PATCH without `If-Match` re-reads and retries when a concurrent write
/// changed the resource between its read and its write.
const PATCH_ATTEMPTS: usize = 3;

/// The most pages of groups read for one user's `groups`: with the default page of 200,
/// a million groups; past it the directory's total is taken to be wrong.
const MAX_GROUP_PAGES: usize = 5_000;

impl<D: Directory> ScimServer<D> {
    /// A server answering from `directory`.
    pub fn new(directory: D, config: ServerConfig) -> Self {
        ScimServer {
            directory,
            config,
            log: Box::new(NoLog),
            directory_hashes_passwords: false,
        }
    }

    /// The same server writing its log lines (hidden error causes, dropped passwords) to
    /// `log`.
    pub fn with_log(mut self, log: impl LogPort + 'static) -> Self {
        self.log = Box::new(log);
        self
    }

    /// The same server handing `password` to a directory that declared it stores
    /// passwords only as one-way hashes. Its contract: a `password` in a create or replace
    /// is what the client just sent, to hash; a replace without one keeps the stored hash;
    /// a stored resource never carries the password or its hash.
    pub fn with_password_hashing_directory(mut self, hashes_passwords: bool) -> Self {
        self.directory_hashes_passwords = hashes_passwords;
        self
    }

    /// The directory.
    pub fn directory(&self) -> &D {
        &self.directory
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Answers one request. Never panics; every error is a SCIM error response.
    pub fn handle(&self, request: &ServerRequest) -> ServerResponse {
        self.try_handle(request)
            .unwrap_or_else(|e| self.report(e).response())
    }

    /// The error as the client gets it: a cause hidden from the client (a directory's
    /// own text) is logged under the reference the answer carries.
    pub(crate) fn report(&self, error: ScimError) -> ScimError {
        let (error, line) = error.reported();
        if let Some(line) = line {
            let level = if error.status == 409 {
                LogLevel::Warn
            } else {
                LogLevel::Error
            };
            self.log.log(level, &line);
        }
        error
    }

    /// Takes `password` out of a User about to be written unless the directory declared
    /// that it hashes passwords: RFC 7643 makes it write-only, and a directory that keeps
    /// it as sent would hold every user's password in clear.
    fn guard_password(&self, kind: ResourceKind, resource: &mut Value) {
        if self.directory_hashes_passwords || kind != ResourceKind::User {
            return;
        }
        if strip_password(resource) {
            self.log.log(
                LogLevel::Warn,
                "server: a User's password was dropped, not stored: the directory does not \
                 declare that it hashes passwords (policy `directory.hashes_passwords`)",
            );
        }
    }

    fn try_handle(&self, request: &ServerRequest) -> Result<ServerResponse, ScimError> {
        // A host may leave the query on the path.
        let (path, inline_query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let raw_query = if request.query.is_empty() {
            inline_query
        } else {
            request.query.as_str()
        };
        let route = Route::parse(path)
            .ok_or_else(|| ScimError::new(404, "there is no SCIM endpoint at this path"))?;
        if !route.is_discovery() {
            authenticate(request, &self.config.bearer_token)?;
        }
        if request.body.len() as u64 > self.config.bulk_max_payload {
            return Err(ScimError::new(
                413,
                format!(
                    "the request body is larger than the maximum of {} bytes",
                    self.config.bulk_max_payload
                ),
            ));
        }
        let method = request.method.trim().to_ascii_uppercase();
        let params = QueryParams::parse(raw_query);
        self.dispatch(&method, &route, &params, &request.headers, &request.body)
    }

    /// Carries out an authenticated request on a route; also the entry point for each
    /// operation of a bulk request.
    pub(crate) fn dispatch(
        &self,
        method: &str,
        route: &Route,
        params: &QueryParams,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ServerResponse, ScimError> {
        if *route == Route::Me {
            return Err(ScimError::new(501, "the /Me endpoint is not implemented"));
        }
        let allowed = route.allowed();
        if !allowed.contains(&method) {
            return Err(ScimError::new(
                405,
                format!(
                    "this endpoint allows {}, not {}",
                    allowed.join(", "),
                    safe_method(method)
                ),
            )
            .with_header("Allow", allowed.join(", ")));
        }
        let base = self.config.base();
        match route {
            Route::ServiceProviderConfig => Ok(ServerResponse::json_body(
                200,
                &discovery::service_provider_config(
                    base,
                    self.config.max_results,
                    self.config.bulk_max_operations,
                    self.config.bulk_max_payload,
                ),
            )),
            Route::Schemas(id) => discovery::schemas(base, id.as_deref(), params)
                .map(|v| ServerResponse::json_body(200, &v)),
            Route::ResourceTypes(id) => discovery::resource_types(base, id.as_deref(), params)
                .map(|v| ServerResponse::json_body(200, &v)),
            Route::Collection(kind) => match method {
                "GET" => {
                    let req = ListRequest::from_query(params, self.config.max_results)?;
                    self.list(Some(*kind), &req)
                }
                _ => self.create(*kind, params, body),
            },
            Route::Item(kind, id) => match method {
                "GET" => self.get(*kind, id, params, headers),
                "PUT" => self.replace(*kind, id, params, headers, body),
                "PATCH" => self.patch(*kind, id, params, headers, body),
                _ => self.delete(*kind, id, headers),
            },
            Route::Search(kind) => {
                let req = ListRequest::from_search(&parse_json(body)?, self.config.max_results)?;
                self.list(*kind, &req)
            }
            Route::Bulk => self.bulk(body),
            Route::Me => Err(ScimError::new(501, "the /Me endpoint is not implemented")),
        }
    }

    /// The stored resource, or 404.
    fn fetch(&self, kind: ResourceKind, id: &str) -> Result<StoredResource, ScimError> {
        self.directory
            .get(kind, id)?
            .ok_or_else(|| ScimError::not_found(kind.name()))
    }

    /// The ids and names of the groups a User directly belongs to: one directory query.
    fn groups_of(&self, user_id: &str) -> Result<Vec<Value>, ScimError> {
        let filter = Filter::ValuePath {
            path: AttrName::simple("members"),
            filter: Box::new(Filter::equals(AttrName::simple("value"), user_id)),
        };
        let base = self.config.base();
        let mut groups = Vec::new();
        // A user may be in more groups than one page holds (`max_results`): every one of
        // them is listed, page by page, or the user's `groups` would silently lose some.
        for _ in 0..MAX_GROUP_PAGES {
            // `group_ref` reads a group's `displayName` only: its members stay unparsed.
            let page = self.directory.query_keeping(
                ResourceKind::Group,
                &Query {
                    filter: Some(filter.clone()),
                    start_index: u32::try_from(groups.len() + 1).unwrap_or(u32::MAX),
                    count: self.config.max_results,
                    sort_by: None,
                    sort_descending: false,
                },
                &["displayName"],
            )?;
            groups.extend(page.resources.iter().map(|g| group_ref(base, g)));
            // An empty page ends it too: a directory that overcounts must not loop.
            if page.resources.is_empty() || groups.len() as u64 >= page.total_results {
                return Ok(groups);
            }
        }
        Err(ScimError::new(
            500,
            format!(
                "the directory kept serving groups of user {user_id} past {MAX_GROUP_PAGES} \
                 pages; its count of them cannot be right"
            ),
        ))
    }

    /// The resource as returned, with computed `groups` if wanted, projected.
    fn output(
        &self,
        kind: ResourceKind,
        stored: &StoredResource,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let mut v = resource::render(kind, stored, self.config.base());
        if kind == ResourceKind::User && projection.wants("groups") {
            let groups = self.groups_of(&stored.id)?;
            if !groups.is_empty() {
                v["groups"] = Value::Array(groups);
            }
        }
        projection.apply(&mut v);
        Ok(v)
    }

    /// A single-resource response, with its `ETag`.
    fn single(
        &self,
        status: u16,
        kind: ResourceKind,
        stored: &StoredResource,
        projection: &Projection,
    ) -> Result<ServerResponse, ScimError> {
        let body = self.output(kind, stored, projection)?;
        Ok(ServerResponse::json_body(status, &body).with_header("ETag", etag(&stored.version)))
    }

    fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        params: &QueryParams,
        headers: &[(String, String)],
    ) -> Result<ServerResponse, ScimError> {
        let projection = projection(params)?;
        let stored = self.fetch(kind, id)?;
        if let Some(tags) = header(headers, "If-None-Match")
            && etag::matches(tags, &stored.version)
        {
            return Ok(ServerResponse::empty(304).with_header("ETag", etag(&stored.version)));
        }
        self.single(200, kind, &stored, &projection)
    }

    /// A list or search: one directory query for the page (two for a search across both
    /// resource types), then the `groups` of each User returned.
    fn list(
        &self,
        kind: Option<ResourceKind>,
        req: &ListRequest,
    ) -> Result<ServerResponse, ScimError> {
        let q = &req.query;
        let mut total: u64 = 0;
        let mut resources = Vec::new();
        let kinds: &[ResourceKind] = match &kind {
            Some(k) => std::slice::from_ref(k),
            None => &[ResourceKind::User, ResourceKind::Group],
        };
        for &k in kinds {
            // Across kinds, the page continues into the next kind where this one ends.
            let start = u64::from(q.start_index)
                .saturating_sub(total)
                .clamp(1, u64::from(u32::MAX)) as u32;
            let room = (q.count as usize).saturating_sub(resources.len()) as u32;
            let page = self.directory.query(
                k,
                &Query {
                    start_index: start,
                    count: room,
                    ..q.clone()
                },
            )?;
            for stored in page.resources.iter().take(room as usize) {
                resources.push(self.output(k, stored, &req.projection)?);
            }
            total = total.saturating_add(page.total_results);
        }
        Ok(ServerResponse::json_body(
            200,
            &list_response(total, q.start_index, resources),
        ))
    }

    fn create(
        &self,
        kind: ResourceKind,
        params: &QueryParams,
        body: &[u8],
    ) -> Result<ServerResponse, ScimError> {
        let projection = projection(params)?;
        let mut resource = validate(kind, &parse_json(body)?, SchemasRule::Require)?;
        self.guard_password(kind, &mut resource);
        let stored = self.directory.create(kind, &resource)?;
        Ok(self
            .single(201, kind, &stored, &projection)?
            .with_header("Location", location(self.config.base(), kind, &stored.id)))
    }

    fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        params: &QueryParams,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ServerResponse, ScimError> {
        let projection = projection(params)?;
        let input = parse_json(body)?;
        let current = self.fetch(kind, id)?;
        let if_match = header(headers, "If-Match");
        check_if_match(if_match, &current)?;
        let mut resource = validate(kind, &input, SchemasRule::Require)?;
        // A PUT without `password` keeps the stored one (clients cannot read it back, so
        // leaving it out cannot mean "clear it"): the directory's contract, since only it
        // holds the hash.
        self.guard_password(kind, &mut resource);
        let stored = self.directory.replace(
            kind,
            id,
            &resource,
            if_match.map(|_| current.version.as_str()),
        )?;
        self.single(200, kind, &stored, &projection)
    }

    fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        params: &QueryParams,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<ServerResponse, ScimError> {
        let projection = projection(params)?;
        let request: PatchRequest = serde_json::from_value(parse_json(body)?)
            .map_err(|e| ScimError::syntax(format!("not a valid PatchOp request: {e}")))?;
        if kind == ResourceKind::User {
            refuse_read_only(&request)?;
        }
        let if_match = header(headers, "If-Match");
        let base = self.config.base();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.fetch(kind, id)?;
            check_if_match(if_match, &current)?;
            // The patch applies to the resource without any stored `password`: what
            // reaches the directory is a password this request sets, or none (kept).
            let mut unpatched = current.clone();
            strip_password(&mut unpatched.resource);
            let mut doc = resource::with_server_keys(kind, &unpatched, base);
            request.apply_to(&mut doc)?;
            let mut patched = validate(kind, &doc, SchemasRule::Supply)?;
            self.guard_password(kind, &mut patched);
            if patched == unpatched.resource {
                // Nothing changed, so nothing is written and the version stays.
                return self.single(200, kind, &current, &projection);
            }
            match self
                .directory
                .replace(kind, id, &patched, Some(&current.version))
            {
                Ok(stored) => return self.single(200, kind, &stored, &projection),
                Err(DirectoryError::VersionMismatch)
                    if if_match.is_none() && attempt < PATCH_ATTEMPTS =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        headers: &[(String, String)],
    ) -> Result<ServerResponse, ScimError> {
        if let Some(tags) = header(headers, "If-Match") {
            let current = self.fetch(kind, id)?;
            check_if_match(Some(tags), &current)?;
        }
        if !self.directory.delete(kind, id)? {
            return Err(ScimError::not_found(kind.name()));
        }
        Ok(ServerResponse::empty(204))
    }
}

/// The request's `attributes` and `excludedAttributes`.
fn projection(params: &QueryParams) -> Result<Projection, ScimError> {
    let names = |n: &str| params.get(n).map(split_names).unwrap_or_default();
    Projection::new(&names("attributes"), &names("excludedAttributes"))
}

/// The body as JSON; 400 `invalidSyntax` when it is missing or malformed.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ScimError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::syntax("the request needs a JSON body"));
    }
    // serde_json limits nesting to 128 levels, so hostile bodies cannot exhaust the stack.
    serde_json::from_slice(body).map_err(|e| ScimError::syntax(format!("malformed JSON: {e}")))
}

/// 412 unless `If-Match` (when sent) names the current version.
fn check_if_match(if_match: Option<&str>, current: &StoredResource) -> Result<(), ScimError> {
    match if_match {
        Some(tags) if !etag::matches(tags, &current.version) => Err(ScimError::new(
            412,
            format!(
                "If-Match does not match the current version {}",
                etag(&current.version)
            ),
        )),
        _ => Ok(()),
    }
}

/// Removes `password` (in any case) from a resource; whether there was one.
fn strip_password(resource: &mut Value) -> bool {
    let Some(obj) = resource.as_object_mut() else {
        return false;
    };
    let before = obj.len();
    obj.retain(|k, _| !k.eq_ignore_ascii_case("password"));
    obj.len() != before
}

/// User `groups` is computed from group membership (`readOnly`); a PATCH naming it is
/// refused with `mutability` (RFC 7644 §3.5.2).
fn refuse_read_only(request: &PatchRequest) -> Result<(), ScimError> {
    for op in &request.operations {
        let Some(p) = op.path.as_deref() else {
            continue;
        };
        if AttrPath::parse(p).is_ok_and(|p| p.is_top_level() && p.is_attr("groups")) {
            return Err(ScimError::bad_request(
                PatchErrorKind::Mutability.as_str(),
                "groups is read-only: change membership through the Group's members",
            ));
        }
    }
    Ok(())
}

/// The method for an error message: short and printable, since it is client input.
fn safe_method(method: &str) -> String {
    let m: String = method
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(16)
        .collect();
    if m.is_empty() { "(none)".into() } else { m }
}
