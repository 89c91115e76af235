//! The one glue module: generates the WIT bindings, implements the exported interfaces on
//! top of the pure core, backs the core's ports with the imports, and converts between
//! generated and core types. Nothing else in the crate names a generated type.

use crate::client::bulk::BatchItem;
use crate::client::capabilities::ServerCapabilities as CoreCaps;
use crate::client::connector::Connector as CoreConnector;
use crate::config::{Auth as CoreAuth, ConnectorConfig as CoreConfig};
use crate::error::{
    ProvisioningError as CoreError, RetryClass as CoreRetry, TransportError as CoreTransportError,
};
use crate::ports::{self, HttpPort, LogLevel, LogPort};
use crate::scim::text;
use crate::user;

wit_bindgen::generate!({
    world: "provisioner",
    path: "wit",
});

use exports::scim::provisioner::client::{Connector, Guest, GuestConnector};
use exports::scim::provisioner::selection::{self as wit_selection, Guest as SelectionGuest};
use exports::scim::provisioner::server::{
    self as wit_server, Guest as ServerGuest, GuestScimServer, ScimServer as ScimServerHandle,
};
use scim::provisioner::directory as wit_dir;
use scim::provisioner::http_client as wit_http;
use scim::provisioner::logging as wit_log;
use scim::provisioner::types as wit;

/// The component's exports.
struct Component;

impl Guest for Component {
    type Connector = ConnectorResource;
}

/// The exported `connector` resource: a core connector over the import-backed ports.
struct ConnectorResource(CoreConnector<ImportedHttp, ImportedLog>);

impl GuestConnector for ConnectorResource {
    fn open(config: wit::ConnectorConfig) -> Result<Connector, wit::ProvisioningError> {
        let auth = match config.auth {
            wit::Auth::Bearer(token) => CoreAuth::Bearer(token),
            wit::Auth::Basic(b) => CoreAuth::Basic {
                username: b.username,
                password: b.password,
            },
            wit::Auth::None => CoreAuth::None,
        };
        let allow_insecure_http = crate::config::insecure_http_allowed(&config.policy_json)?;
        // With the policy's `oauth2` section, basic credentials are the OAuth 2.0 client's.
        let auth =
            crate::client::oauth2::auth_for_policy(auth, &config.policy_json, allow_insecure_http)?;
        let core = CoreConfig::with_insecure_http(
            &config.base_url,
            auth,
            config.timeout_ms,
            allow_insecure_http,
        )?;
        let connector = CoreConnector::open(core, &config.policy_json, ImportedHttp, ImportedLog)?;
        Ok(Connector::new(ConnectorResource(connector)))
    }

    fn test_connection(&self) -> Result<wit::ServerCapabilities, wit::ProvisioningError> {
        Ok(self.0.test_connection()?.into())
    }

    fn provision(
        &self,
        user: wit::CmsUser,
        event: wit::UserEvent,
        link: Option<wit::Link>,
    ) -> Result<wit::ProvisionOutcome, wit::ProvisioningError> {
        let link: Option<user::Link> = link.map(Into::into);
        Ok(self
            .0
            .provision(&user.into(), event.into(), link.as_ref())?
            .into())
    }

    fn scope_fields(&self) -> Vec<String> {
        self.0.scope_fields()
    }

    fn plan(&self, user: wit::CmsUser, event: wit::UserEvent, linked: bool) -> wit::Plan {
        use crate::client::selection::Decision;
        let (action, reason) = match self.0.plan(&user.into(), event.into(), linked) {
            Decision::Create => (wit::PlannedAction::Create, None),
            Decision::Update => (wit::PlannedAction::Update, None),
            Decision::Deactivate => (wit::PlannedAction::Deactivate, None),
            Decision::Reactivate => (wit::PlannedAction::Reactivate, None),
            Decision::Delete => (wit::PlannedAction::Delete, None),
            Decision::Skip(why) => (wit::PlannedAction::Skip, Some(why.to_string())),
        };
        wit::Plan { action, reason }
    }

    fn provision_batch(&self, items: Vec<wit::BatchItem>) -> wit::BatchOutcome {
        let items: Vec<BatchItem> = items
            .into_iter()
            .map(|i| BatchItem {
                user: i.user.into(),
                event: i.event.into(),
                link: i.link.map(Into::into),
            })
            .collect();
        let out = self.0.provision_batch(&items);
        wit::BatchOutcome {
            results: out
                .results
                .into_iter()
                .map(|r| r.map(Into::into).map_err(Into::into))
                .collect(),
            requests: out.requests,
            bulk_requests: out.bulk_requests,
        }
    }

    fn index_remote_users(&self) -> Result<wit::RemoteListing, wit::ProvisioningError> {
        let listing = self.0.index_remote_users()?;
        Ok(wit::RemoteListing {
            users: listing.users,
            requests: listing.requests,
        })
    }

    fn export_remote_index(&self) -> Option<String> {
        self.0.export_remote_index()
    }

    fn import_remote_index(&self, document: String) -> Result<u32, wit::ProvisioningError> {
        Ok(self.0.import_remote_index(&document)?)
    }

    fn remote_user_ids(&self) -> Vec<String> {
        self.0.remote_user_ids()
    }

    fn export_dialect(&self) -> String {
        self.0.export_dialect()
    }

    fn import_dialect(&self, document: String) -> Result<(), wit::ProvisioningError> {
        Ok(self.0.import_dialect(&document)?)
    }

    fn get_user(&self, remote_id: String) -> Result<Option<String>, wit::ProvisioningError> {
        Ok(self.0.get_user(&remote_id)?.map(|v| text::json(&v)))
    }

    fn map_user(&self, user: wit::CmsUser) -> Result<String, wit::ProvisioningError> {
        Ok(text::json(&self.0.map_user(&user.into())?))
    }
}

impl ServerGuest for Component {
    type ScimServer = ScimServerResource;
}

/// The exported `scim-server` resource: the core server over the imported directory.
struct ScimServerResource(crate::server::ScimServer<ImportedDirectory>);

impl GuestScimServer for ScimServerResource {
    fn open(config: wit_server::ServerConfig) -> Result<ScimServerHandle, wit::ProvisioningError> {
        let core = crate::server::ServerConfig {
            base_url: config.base_url,
            bearer_token: config.bearer_token,
            max_results: config.max_results,
            bulk_max_operations: config.bulk_max_operations,
            bulk_max_payload: config.bulk_max_payload,
        }
        .validated()?;
        let policy = crate::policy::Policy::parse(&config.policy_json)?;
        Ok(ScimServerHandle::new(ScimServerResource(
            crate::server::ScimServer::new(
                ImportedDirectory {
                    mapping: policy.mapping,
                },
                core,
            )
            .with_log(ImportedLog)
            .with_password_hashing_directory(policy.directory.hashes_passwords),
        )))
    }

    fn handle(&self, request: wit_server::ServerRequest) -> wit_server::ServerResponse {
        let response = self.0.handle(&crate::server::ServerRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        });
        wit_server::ServerResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

impl SelectionGuest for Component {
    fn select(
        resources: Vec<String>,
        search: wit_dir::Search,
    ) -> Result<wit_selection::Selection, wit_dir::DirectoryError> {
        use crate::server::select;
        let views = resources
            .iter()
            .enumerate()
            .map(|(i, text)| {
                serde_json::from_str(text).map_err(|e| {
                    ports::DirectoryError::Other(format!("resource {i} is not JSON: {e}"))
                })
            })
            .collect::<Result<Vec<serde_json::Value>, _>>()
            .map_err(dir_error_to_wit)?;
        let query = select::query_from_text(
            search.filter.as_deref(),
            search.start_index,
            search.count,
            search.sort_by,
            search.sort_descending,
        )
        .map_err(dir_error_to_wit)?;
        let selection = select::select(&views, &query).map_err(dir_error_to_wit)?;
        let indices = selection
            .indices
            .into_iter()
            .map(|i| {
                u32::try_from(i).map_err(|_| {
                    wit_dir::DirectoryError::Other(format!("index {i} does not fit a u32"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(wit_selection::Selection {
            total_results: selection.total_results,
            indices,
        })
    }
}

/// The server's directory port, backed by the `directory` import. Users travel with their
/// CMS view ([`crate::server::cms_view`]), from the policy's reverse mapping.
struct ImportedDirectory {
    mapping: crate::mapping::Mapping,
}

impl ImportedDirectory {
    fn cms_view(
        &self,
        kind: ports::ResourceKind,
        resource: &serde_json::Value,
    ) -> Option<wit::CmsUser> {
        crate::server::cms_view(&self.mapping, kind, resource).map(Into::into)
    }

    /// A page of the `query` import, each resource parsed whole or, with `keep`, only the
    /// attributes named there.
    fn query_parsed(
        &self,
        kind: ports::ResourceKind,
        query: &ports::Query,
        keep: Option<&[&str]>,
    ) -> Result<ports::QueryPage, ports::DirectoryError> {
        let page = wit_dir::query(
            dir_kind(kind),
            &wit_dir::Search {
                filter: query.filter.as_ref().map(ToString::to_string),
                start_index: query.start_index,
                count: query.count,
                sort_by: query.sort_by.clone(),
                sort_descending: query.sort_descending,
            },
        )
        .map_err(dir_error)?;
        Ok(ports::QueryPage {
            total_results: page.total_results,
            resources: page
                .resources
                .into_iter()
                .map(|r| stored_keeping(r, keep))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<user::CmsUser> for wit::CmsUser {
    fn from(u: user::CmsUser) -> Self {
        Self {
            id: u.id,
            fields: u
                .fields
                .into_iter()
                .map(|(k, v)| (k, field_to_wit(v)))
                .collect(),
            active: u.active,
        }
    }
}

fn field_to_wit(v: user::FieldValue) -> wit::FieldValue {
    match v {
        user::FieldValue::Text(s) => wit::FieldValue::Text(s),
        user::FieldValue::Number(n) => wit::FieldValue::Number(n),
        user::FieldValue::Boolean(b) => wit::FieldValue::Boolean(b),
        user::FieldValue::TextList(l) => wit::FieldValue::TextList(l),
        user::FieldValue::Null => wit::FieldValue::Null,
    }
}

fn dir_kind(kind: ports::ResourceKind) -> wit_dir::ResourceKind {
    match kind {
        ports::ResourceKind::User => wit_dir::ResourceKind::User,
        ports::ResourceKind::Group => wit_dir::ResourceKind::Group,
    }
}

fn dir_error(e: wit_dir::DirectoryError) -> ports::DirectoryError {
    use ports::DirectoryError as E;
    match e {
        wit_dir::DirectoryError::NotFound => E::NotFound,
        wit_dir::DirectoryError::Conflict(m) => E::Conflict(m),
        wit_dir::DirectoryError::VersionMismatch => E::VersionMismatch,
        wit_dir::DirectoryError::InvalidFilter(m) => E::InvalidFilter(m),
        wit_dir::DirectoryError::Unavailable(m) => E::Unavailable(m),
        wit_dir::DirectoryError::Other(m) => E::Other(m),
    }
}

fn dir_error_to_wit(e: ports::DirectoryError) -> wit_dir::DirectoryError {
    use ports::DirectoryError as E;
    match e {
        E::NotFound => wit_dir::DirectoryError::NotFound,
        E::Conflict(m) => wit_dir::DirectoryError::Conflict(m),
        E::VersionMismatch => wit_dir::DirectoryError::VersionMismatch,
        E::InvalidFilter(m) => wit_dir::DirectoryError::InvalidFilter(m),
        E::Unavailable(m) => wit_dir::DirectoryError::Unavailable(m),
        E::Other(m) => wit_dir::DirectoryError::Other(m),
    }
}

fn stored(r: wit_dir::StoredResource) -> Result<ports::StoredResource, ports::DirectoryError> {
    stored_keeping(r, None)
}

/// What a write stored. A directory that stored the text it was sent (as it should; the
/// `id` and `meta` it ignores are not in it) hands the same text back, and then the value
/// that text was written from is it: copying that is cheaper than parsing the text again.
/// Anything else is parsed.
fn stored_as_sent(
    r: wit_dir::StoredResource,
    sent: &str,
    resource: &serde_json::Value,
) -> Result<ports::StoredResource, ports::DirectoryError> {
    if r.json != sent {
        return stored(r);
    }
    Ok(ports::StoredResource {
        id: r.id,
        version: r.version,
        created: r.created,
        last_modified: r.last_modified,
        resource: resource.clone(),
    })
}

/// The stored resource, with only the attributes in `keep` when it is given.
fn stored_keeping(
    r: wit_dir::StoredResource,
    keep: Option<&[&str]>,
) -> Result<ports::StoredResource, ports::DirectoryError> {
    let parsed = match keep {
        Some(keep) => crate::scim::partial::object_keeping(&r.json, keep),
        None => serde_json::from_str(&r.json),
    };
    let resource = parsed.map_err(|e| {
        ports::DirectoryError::Other(format!("the directory returned invalid JSON: {e}"))
    })?;
    Ok(ports::StoredResource {
        id: r.id,
        version: r.version,
        created: r.created,
        last_modified: r.last_modified,
        resource,
    })
}

impl ports::Directory for ImportedDirectory {
    fn get(
        &self,
        kind: ports::ResourceKind,
        id: &str,
    ) -> Result<Option<ports::StoredResource>, ports::DirectoryError> {
        wit_dir::get(dir_kind(kind), id)
            .map_err(dir_error)?
            .map(stored)
            .transpose()
    }

    fn query(
        &self,
        kind: ports::ResourceKind,
        query: &ports::Query,
    ) -> Result<ports::QueryPage, ports::DirectoryError> {
        self.query_parsed(kind, query, None)
    }

    /// Parses only the attributes kept: a user's groups read each group's `displayName`,
    /// and building its members as values only to drop them was most of such a read.
    fn query_keeping(
        &self,
        kind: ports::ResourceKind,
        query: &ports::Query,
        keep: &[&str],
    ) -> Result<ports::QueryPage, ports::DirectoryError> {
        self.query_parsed(kind, query, Some(keep))
    }

    fn create(
        &self,
        kind: ports::ResourceKind,
        resource: &serde_json::Value,
    ) -> Result<ports::StoredResource, ports::DirectoryError> {
        let cms = self.cms_view(kind, resource);
        let sent = text::json(resource);
        stored_as_sent(
            wit_dir::create(dir_kind(kind), &sent, cms.as_ref()).map_err(dir_error)?,
            &sent,
            resource,
        )
    }

    fn replace(
        &self,
        kind: ports::ResourceKind,
        id: &str,
        resource: &serde_json::Value,
        if_version: Option<&str>,
    ) -> Result<ports::StoredResource, ports::DirectoryError> {
        let cms = self.cms_view(kind, resource);
        let sent = text::json(resource);
        stored_as_sent(
            wit_dir::replace(dir_kind(kind), id, &sent, cms.as_ref(), if_version)
                .map_err(dir_error)?,
            &sent,
            resource,
        )
    }

    fn delete(&self, kind: ports::ResourceKind, id: &str) -> Result<bool, ports::DirectoryError> {
        wit_dir::delete(dir_kind(kind), id).map_err(dir_error)
    }
}

/// The core's HTTP port, backed by the `http-client` import.
struct ImportedHttp;

impl HttpPort for ImportedHttp {
    fn send(&self, request: ports::HttpRequest) -> Result<ports::HttpResponse, CoreTransportError> {
        let method = match request.method {
            ports::Method::Get => wit_http::Method::Get,
            ports::Method::Post => wit_http::Method::Post,
            ports::Method::Put => wit_http::Method::Put,
            ports::Method::Patch => wit_http::Method::Patch,
            ports::Method::Delete => wit_http::Method::Delete,
        };
        let answer = wit_http::send(&wit_http::HttpRequest {
            method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        });
        match answer {
            Ok(r) => Ok(ports::HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(match e {
                wit_http::TransportError::Denied(m) => CoreTransportError::Denied(m),
                wit_http::TransportError::InvalidUrl(m) => CoreTransportError::InvalidUrl(m),
                wit_http::TransportError::CannotConnect(m) => CoreTransportError::CannotConnect(m),
                wit_http::TransportError::Tls(m) => CoreTransportError::Tls(m),
                wit_http::TransportError::Timeout => CoreTransportError::Timeout,
                wit_http::TransportError::Other(m) => CoreTransportError::Other(m),
            }),
        }
    }
}

/// The core's log port, backed by the `logging` import.
struct ImportedLog;

impl LogPort for ImportedLog {
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => wit_log::Level::Trace,
            LogLevel::Debug => wit_log::Level::Debug,
            LogLevel::Info => wit_log::Level::Info,
            LogLevel::Warn => wit_log::Level::Warn,
            LogLevel::Error => wit_log::Level::Error,
        };
        wit_log::log(level, message);
    }
}

impl From<CoreTransportError> for wit_http::TransportError {
    fn from(e: CoreTransportError) -> Self {
        match e {
            CoreTransportError::Denied(m) => Self::Denied(m),
            CoreTransportError::InvalidUrl(m) => Self::InvalidUrl(m),
            CoreTransportError::CannotConnect(m) => Self::CannotConnect(m),
            CoreTransportError::Tls(m) => Self::Tls(m),
            CoreTransportError::Timeout => Self::Timeout,
            CoreTransportError::Other(m) => Self::Other(m),
        }
    }
}

impl From<CoreRetry> for wit::RetryClass {
    fn from(r: CoreRetry) -> Self {
        match r {
            CoreRetry::Permanent => Self::Permanent,
            CoreRetry::Backoff => Self::Backoff,
            CoreRetry::AfterSeconds(s) => Self::AfterSeconds(s),
        }
    }
}

impl From<CoreError> for wit::ProvisioningError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidConfig(m) => Self::InvalidConfig(m),
            CoreError::MissingAttribute { user_id, attribute } => {
                Self::MissingAttribute(wit::MissingAttribute { user_id, attribute })
            }
            CoreError::Transport(t) => Self::Transport(wit::TransportFailure {
                retry: t.retry_class().into(),
                error: t.into(),
            }),
            CoreError::Scim(s) => Self::Scim(wit::ScimError {
                status: s.status,
                scim_type: s.scim_type,
                detail: s.detail,
                retry: s.retry.into(),
            }),
            CoreError::UnexpectedResponse {
                status,
                reason,
                retry,
            } => Self::UnexpectedResponse(wit::UnexpectedResponse {
                status,
                reason,
                retry: retry.into(),
            }),
            CoreError::Other(m) => Self::Other(m),
        }
    }
}

impl From<CoreCaps> for wit::ServerCapabilities {
    fn from(c: CoreCaps) -> Self {
        Self {
            discovered: c.discovered,
            patch: c.patch,
            bulk: c.bulk.map(|b| wit::BulkLimits {
                max_operations: b.max_operations,
                max_payload_size: b.max_payload_size,
            }),
            filter_max_results: c.filter_max_results,
            etag: c.etag,
            sort: c.sort,
            change_password: c.change_password,
        }
    }
}

impl From<wit::FieldValue> for user::FieldValue {
    fn from(v: wit::FieldValue) -> Self {
        match v {
            wit::FieldValue::Text(s) => Self::Text(s),
            wit::FieldValue::Number(n) => Self::Number(n),
            wit::FieldValue::Boolean(b) => Self::Boolean(b),
            wit::FieldValue::TextList(l) => Self::TextList(l),
            wit::FieldValue::Null => Self::Null,
        }
    }
}

impl From<wit::CmsUser> for user::CmsUser {
    fn from(u: wit::CmsUser) -> Self {
        Self {
            id: u.id,
            fields: u.fields.into_iter().map(|(k, v)| (k, v.into())).collect(),
            active: u.active,
        }
    }
}

impl From<wit::UserEvent> for user::UserEvent {
    fn from(e: wit::UserEvent) -> Self {
        match e {
            wit::UserEvent::Created => Self::Created,
            wit::UserEvent::Updated => Self::Updated,
            wit::UserEvent::Blocked => Self::Blocked,
            wit::UserEvent::Unblocked => Self::Unblocked,
            wit::UserEvent::Deleted => Self::Deleted,
            wit::UserEvent::Reconcile => Self::Reconcile,
        }
    }
}

impl From<wit::Link> for user::Link {
    fn from(l: wit::Link) -> Self {
        Self {
            remote_id: l.remote_id,
            version: l.version,
            snapshot: l.snapshot,
        }
    }
}

impl From<user::Link> for wit::Link {
    fn from(l: user::Link) -> Self {
        Self {
            remote_id: l.remote_id,
            version: l.version,
            snapshot: l.snapshot,
        }
    }
}

impl From<user::Action> for wit::Action {
    fn from(a: user::Action) -> Self {
        match a {
            user::Action::Created => Self::Created,
            user::Action::Adopted => Self::Adopted,
            user::Action::Updated => Self::Updated,
            user::Action::Unchanged => Self::Unchanged,
            user::Action::Deactivated => Self::Deactivated,
            user::Action::Deleted => Self::Deleted,
            user::Action::Unlinked => Self::Unlinked,
            user::Action::Skipped => Self::Skipped,
        }
    }
}

impl From<user::ProvisionOutcome> for wit::ProvisionOutcome {
    fn from(o: user::ProvisionOutcome) -> Self {
        Self {
            action: o.action.into(),
            reason: o.reason,
            link: o.link.map(Into::into),
            location: o.location,
            requests: o.requests,
        }
    }
}

export!(Component);
