//! Loads the component once, instantiates it per session, and exposes the exported client
//! role as plain Rust calls.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store};

use crate::bindings::{Provisioner, ProvisionerPre};
use crate::host_state::{DirectoryBackend, HostState, add_to_linker};
use crate::http::{HeldRequest, HttpCapability, OriginPolicy};
use crate::logging::{Level, LogSink};
use crate::types::{
    Auth, BasicCredentials, BatchItem, BatchOutcome, CmsUser, ConnectorConfig, Link, Plan,
    ProvisionOutcome, ProvisioningError, RemoteListing, ServerCapabilities, ServerConfig,
    ServerRequest, ServerResponse, UserEvent,
};

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
        self.open_with_log(settings, LogSink::stderr(Level::Warn))
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
        let state = HostState::new(HttpCapability::new(OriginPolicy::deny_all()), log)
            .with_directory(directory);
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

    /// The ids of the remote users the last listing held (see
    /// [`Session::index_remote_users`]); empty when nothing was listed.
    pub fn remote_user_ids(&mut self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .bindings
            .scim_provisioner_client()
            .connector()
            .call_remote_user_ids(&mut self.store, self.connector)?)
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
    pub fn take_held(&mut self) -> Vec<HeldRequest> {
        self.store.data_mut().take_held()
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
