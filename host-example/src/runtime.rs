//! Loads the component once, instantiates it per session, and exposes the exported client
//! role as plain Rust calls.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::component::{Component, HasSelf, Linker, ResourceAny, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::exports::scim::provisioner::server::{
    ServerConfig, ServerRequest, ServerResponse,
};
use crate::bindings::scim::provisioner::directory as dir;
use crate::bindings::scim::provisioner::types::{
    Action, Auth, BasicCredentials, BatchItem, BatchOutcome, CmsUser, ConnectorConfig, Link, Plan,
    ProvisionOutcome, ProvisioningError, RemoteListing, RetryClass, ServerCapabilities, UserEvent,
};
use crate::bindings::scim::provisioner::{http_client, logging};
use crate::bindings::{Provisioner, ProvisionerPre};
use crate::directory::DirectoryBackend;
use crate::http::{HttpCapability, OriginPolicy};
use crate::logging::LogSink;

/// Everything a store holds: WASI state and the host capabilities.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: HttpCapability,
    log: LogSink,
    /// The directory behind the server role; none for client-only sessions.
    directory: Option<Box<dyn DirectoryBackend>>,
}

impl HostState {
    /// State with the given HTTP policy and log sink, and a WASI context with no
    /// filesystem, environment or network access (the guest reaches out only through
    /// `http-client`).
    pub fn new(http: HttpCapability, log: LogSink) -> Self {
        HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            http,
            log,
            directory: None,
        }
    }

    /// State whose WASI context is the one given (used by the test runner).
    pub fn with_wasi(wasi: WasiCtx, http: HttpCapability, log: LogSink) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            http,
            log,
            directory: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl http_client::Host for HostState {
    fn send(
        &mut self,
        request: http_client::HttpRequest,
    ) -> Result<http_client::HttpResponse, http_client::TransportError> {
        self.http.send(request)
    }
}

impl logging::Host for HostState {
    fn log(&mut self, level: logging::Level, message: String) {
        self.log.write(level, &message);
    }
}

impl crate::bindings::scim::provisioner::types::Host for HostState {}

impl HostState {
    fn directory(&mut self) -> Result<&mut Box<dyn DirectoryBackend>, dir::DirectoryError> {
        self.directory.as_mut().ok_or_else(|| {
            dir::DirectoryError::Unavailable("this host session has no directory".into())
        })
    }
}

impl dir::Host for HostState {
    fn get(
        &mut self,
        kind: dir::ResourceKind,
        id: String,
    ) -> Result<Option<dir::StoredResource>, dir::DirectoryError> {
        self.directory()?.get(kind, &id)
    }

    fn query(
        &mut self,
        kind: dir::ResourceKind,
        search: dir::Search,
    ) -> Result<dir::QueryPage, dir::DirectoryError> {
        self.directory()?.query(kind, &search)
    }

    fn create(
        &mut self,
        kind: dir::ResourceKind,
        json: String,
        cms: Option<CmsUser>,
    ) -> Result<dir::StoredResource, dir::DirectoryError> {
        self.directory()?.create(kind, &json, cms.as_ref())
    }

    fn replace(
        &mut self,
        kind: dir::ResourceKind,
        id: String,
        json: String,
        cms: Option<CmsUser>,
        if_version: Option<String>,
    ) -> Result<dir::StoredResource, dir::DirectoryError> {
        self.directory()?
            .replace(kind, &id, &json, cms.as_ref(), if_version.as_deref())
    }

    fn delete(&mut self, kind: dir::ResourceKind, id: String) -> Result<bool, dir::DirectoryError> {
        self.directory()?.delete(kind, &id)
    }
}

/// Adds WASI and the component's own imports to a linker: the one place that wires them.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    Provisioner::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}

/// How the connector authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// A bearer token.
    Bearer(String),
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// None.
    None,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::None => f.write_str("None"),
        }
    }
}

impl Credentials {
    fn secrets(&self) -> Vec<String> {
        match self {
            Credentials::Bearer(t) => vec![t.clone()],
            Credentials::Basic { password, .. } => vec![password.clone()],
            Credentials::None => vec![],
        }
    }
}

/// What a session needs to open a connector.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// The SCIM base URL.
    pub base_url: String,
    /// Authentication.
    pub credentials: Credentials,
    /// Per-request timeout in milliseconds.
    pub timeout_ms: u32,
    /// The provisioning policy as JSON; empty for the defaults.
    pub policy_json: String,
}

/// The compiled component, ready to instantiate many times.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    pre: ProvisionerPre<HostState>,
}

impl Runtime {
    /// Where host-example's build script put the component.
    pub fn built_component_path() -> PathBuf {
        PathBuf::from(env!("SCIM_PROVISIONER_WASM"))
    }

    /// Compiles the component at `path` and links its imports.
    pub fn new(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let component = Component::from_file(&engine, path)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("loading the component {}", path.display()))?;
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)?;
        let pre = ProvisionerPre::new(linker.instantiate_pre(&component)?)?;
        Ok(Runtime { engine, pre })
    }

    /// Instantiates the component with a log sink and opens a connector. The outer error
    /// is a host failure (a trap); the inner one is the component's answer.
    pub fn open_with_log(
        &self,
        settings: &ConnectorSettings,
        log: LogSink,
    ) -> anyhow::Result<Result<Session, ProvisioningError>> {
        self.open_inner(settings, log, false)
    }

    fn open_inner(
        &self,
        settings: &ConnectorSettings,
        log: LogSink,
        dry_run: bool,
    ) -> anyhow::Result<Result<Session, ProvisioningError>> {
        let policy = OriginPolicy::for_base_url(&settings.base_url).unwrap_or_default();
        let log = log.redact(settings.credentials.secrets());
        let mut http = HttpCapability::new(policy);
        if dry_run {
            http = http.dry_run();
        }
        let mut store = Store::new(&self.engine, HostState::new(http, log));
        let bindings = self.pre.instantiate(&mut store)?;
        let auth = match &settings.credentials {
            Credentials::Bearer(t) => Auth::Bearer(t.clone()),
            Credentials::Basic { username, password } => Auth::Basic(BasicCredentials {
                username: username.clone(),
                password: password.clone(),
            }),
            Credentials::None => Auth::None,
        };
        let config = ConnectorConfig {
            base_url: settings.base_url.clone(),
            auth,
            timeout_ms: settings.timeout_ms,
            policy_json: settings.policy_json.clone(),
        };
        let opened = bindings
            .scim_provisioner_client()
            .connector()
            .call_open(&mut store, &config)?;
        Ok(opened.map(|connector| Session {
            store,
            bindings,
            connector,
        }))
    }

    /// Like [`Runtime::open_with_log`], but writes are held back (see
    /// [`HttpCapability::dry_run`]); read them with [`Session::take_held`].
    pub fn open_dry_run(
        &self,
        settings: &ConnectorSettings,
        log: LogSink,
    ) -> anyhow::Result<Result<Session, ProvisioningError>> {
        self.open_inner(settings, log, true)
    }

    /// [`Runtime::open_with_log`] with warnings and errors going to stderr.
    pub fn open(
        &self,
        settings: &ConnectorSettings,
    ) -> anyhow::Result<Result<Session, ProvisioningError>> {
        self.open_with_log(settings, LogSink::stderr(logging::Level::Warn))
    }
}

impl Runtime {
    /// Instantiates the component as a SCIM server over `directory`. The outer error is a
    /// trap; the inner one the component's refusal of the configuration.
    pub fn open_server(
        &self,
        config: &ServerConfig,
        directory: Box<dyn DirectoryBackend>,
        log: LogSink,
    ) -> anyhow::Result<Result<ServerSession, ProvisioningError>> {
        let mut state = HostState::new(HttpCapability::new(OriginPolicy::deny_all()), log);
        state.directory = Some(directory);
        let mut store = Store::new(&self.engine, state);
        let bindings = self.pre.instantiate(&mut store)?;
        let opened = bindings
            .scim_provisioner_server()
            .scim_server()
            .call_open(&mut store, config)?;
        Ok(opened.map(|server| ServerSession {
            store,
            bindings,
            server,
        }))
    }
}

/// One instance of the component serving SCIM.
pub struct ServerSession {
    store: Store<HostState>,
    bindings: Provisioner,
    server: ResourceAny,
}

impl ServerSession {
    /// Answers one request. The error is a trap; SCIM errors are responses.
    pub fn handle(&mut self, request: &ServerRequest) -> anyhow::Result<ServerResponse> {
        Ok(self
            .bindings
            .scim_provisioner_server()
            .scim_server()
            .call_handle(&mut self.store, self.server, request)?)
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        let _ = self.server.resource_drop(&mut self.store);
    }
}

/// One instance of the component with an open connector.
pub struct Session {
    store: Store<HostState>,
    bindings: Provisioner,
    connector: ResourceAny,
}

impl Session {
    /// Tests the connection. The outer error is a trap; the inner one the component's answer.
    pub fn test_connection(
        &mut self,
    ) -> anyhow::Result<Result<ServerCapabilities, ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_test_connection(&mut self.store, self.connector)?)
    }

    /// Provisions one user after an event.
    pub fn provision(
        &mut self,
        user: &CmsUser,
        event: UserEvent,
        link: Option<&Link>,
    ) -> anyhow::Result<Result<ProvisionOutcome, ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_provision(&mut self.store, self.connector, user, event, link)?)
    }

    /// What `provision` would do, decided without sending anything.
    pub fn plan(&mut self, user: &CmsUser, event: UserEvent, linked: bool) -> anyhow::Result<Plan> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_plan(&mut self.store, self.connector, user, event, linked)?)
    }

    /// Provisions several users at once, through `/Bulk` where the server supports it.
    pub fn provision_batch(&mut self, items: &[BatchItem]) -> anyhow::Result<BatchOutcome> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_provision_batch(&mut self.store, self.connector, items)?)
    }

    /// Lists the remote users once so a first sync matches locally.
    pub fn index_remote_users(
        &mut self,
    ) -> anyhow::Result<Result<RemoteListing, ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_index_remote_users(&mut self.store, self.connector)?)
    }

    /// The listed remote users as a document for [`Session::import_remote_index`].
    pub fn export_remote_index(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_export_remote_index(&mut self.store, self.connector)?)
    }

    /// Loads remote users another session listed, instead of listing them again.
    pub fn import_remote_index(
        &mut self,
        document: &str,
    ) -> anyhow::Result<Result<u32, ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_import_remote_index(&mut self.store, self.connector, document)?)
    }

    /// What the connector learned about the server (schema, PATCH, filters, paging, the
    /// last connection test's findings), as a document to keep with the connection.
    pub fn export_dialect(&mut self) -> anyhow::Result<String> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_export_dialect(&mut self.store, self.connector)?)
    }

    /// Loads what [`Session::export_dialect`] gave, so this session starts out knowing.
    pub fn import_dialect(
        &mut self,
        document: &str,
    ) -> anyhow::Result<Result<(), ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_import_dialect(&mut self.store, self.connector, document)?)
    }

    /// The writes a dry-run session held back.
    pub fn take_held(&mut self) -> Vec<crate::http::HeldRequest> {
        self.store.data_mut().http.take_held()
    }

    /// Reads one remote user as JSON.
    pub fn get_user(
        &mut self,
        remote_id: &str,
    ) -> anyhow::Result<Result<Option<String>, ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_get_user(&mut self.store, self.connector, remote_id)?)
    }

    /// The SCIM resource a user maps to, as JSON.
    pub fn map_user(
        &mut self,
        user: &CmsUser,
    ) -> anyhow::Result<Result<String, ProvisioningError>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_map_user(&mut self.store, self.connector, user)?)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Drop the guest resource so its destructor runs; a failure here has nowhere to go.
        let _ = self.connector.resource_drop(&mut self.store);
    }
}

/// A sentence for people that says what went wrong and what to check, as the seed's
/// "Save and Test Credentials" would. Never includes a secret.
pub fn describe_error(error: &ProvisioningError) -> String {
    use http_client::TransportError as T;
    match error {
        ProvisioningError::InvalidConfig(m) => format!("invalid configuration: {m}"),
        ProvisioningError::MissingAttribute(m) => format!(
            "user {}: required attribute {} has no value; nothing was sent",
            m.user_id, m.attribute
        ),
        ProvisioningError::Transport(t) => match &t.error {
            T::Denied(m) => format!("request refused by the host: {m}"),
            T::InvalidUrl(m) => format!("invalid URL: {m}"),
            T::CannotConnect(m) => {
                format!(
                    "cannot connect to the SCIM server ({m}); check the base URL and that the server is running"
                )
            }
            T::Tls(m) => format!("TLS failure ({m}); check the server's certificate"),
            T::Timeout => "the SCIM server did not answer in time".into(),
            T::Other(m) => format!("transport failure: {m}"),
        },
        ProvisioningError::Scim(e) => {
            let mut s = match e.status {
                401 => "authentication rejected (HTTP 401): check the bearer token".to_string(),
                403 => "access forbidden (HTTP 403): the token lacks permission".to_string(),
                404 => "not found (HTTP 404): check the SCIM base URL".to_string(),
                status => format!("the SCIM server answered HTTP {status}"),
            };
            if let Some(t) = &e.scim_type {
                s.push_str(&format!(", scimType {t}"));
            }
            if let Some(d) = &e.detail {
                s.push_str(&format!(": {d}"));
            }
            s.push_str(&retry_note(&e.retry));
            s
        }
        ProvisioningError::UnexpectedResponse(u) => {
            let hint = match u.status {
                401 => " (authentication rejected: check the bearer token)",
                403 => " (forbidden: the token lacks permission)",
                404 => " (check the SCIM base URL)",
                _ => "",
            };
            format!(
                "not a SCIM answer (HTTP {}){hint}: {}{}",
                u.status,
                u.reason,
                retry_note(&u.retry)
            )
        }
        ProvisioningError::Other(m) => m.clone(),
    }
}

fn retry_note(retry: &RetryClass) -> String {
    match retry {
        RetryClass::Permanent => String::new(),
        RetryClass::Backoff => " (retryable)".into(),
        RetryClass::AfterSeconds(s) => format!(" (retry after {s} s)"),
    }
}

/// The action's name for people: `created`, `adopted`, `updated` …
pub fn action_label(action: Action) -> &'static str {
    match action {
        Action::Created => "created",
        Action::Adopted => "adopted (an existing remote user matched and was linked)",
        Action::Updated => "updated",
        Action::Unchanged => "unchanged (nothing to send)",
        Action::Deactivated => "deactivated",
        Action::Deleted => "deleted",
        Action::Unlinked => "unlinked",
        Action::Skipped => "skipped",
    }
}
