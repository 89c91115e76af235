//! Loads the component once, instantiates it per session, and exposes the exported client
//! role as plain Rust calls.
//!
//! Every instance runs under [`GuestLimits`]: a memory cap (a grow past it traps with
//! [`MemoryLimitExceeded`]) and a deadline on the guest's time in each export call,
//! through epoch interruption (past it the call traps with [`DeadlineExceeded`]). After
//! any trap the instance is thrown away, and the session's next call runs on a fresh one:
//! the host never calls into a trapped instance.
//!
//! The component is compiled once and kept precompiled (`scim_wasmtime_support::precompiled`,
//! shared with the native bridge): in the directory [`CACHE_ENV`] names, else the one a host
//! passes to [`Runtime::with_cache_dir`], else beside the `.wasm`. Every later process maps
//! that file in milliseconds instead of compiling the component again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
pub use scim_wasmtime_support::CacheInfo;
use scim_wasmtime_support::EpochTicker;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{Engine, Store, UpdateDeadline};

use crate::bindings::exports::scim::provisioner::server::ServerConfig;
use crate::bindings::scim::provisioner::types::{Auth, BasicCredentials, ConnectorConfig};
use crate::bindings::{Provisioner, ProvisionerPre};
use crate::host_state::{DirectoryBackend, HostState, add_to_linker};
use crate::http::{HeldRequest, HttpCapability, OriginPolicy};
use crate::limits::GuestLimits;
use crate::logging::{Level, LogSink};
use crate::types::{
    BatchItem, BatchOutcome, CmsUser, DirectoryError, Link, Plan, ProvisionOutcome,
    ProvisioningError, RemoteListing, Search, Selection, ServerCapabilities, ServerRequest,
    ServerResponse, UserEvent,
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

/// What a session needs to open a connector. Its `Debug` never shows the credentials.
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

/// What the server role needs to open: the WIT's `server-config`, held by the host so that
/// its `Debug` never shows the bearer token (the generated record's `Debug` would).
#[derive(Clone)]
pub struct ServerSettings {
    /// The absolute SCIM base URL, for `meta.location` and `Location`.
    pub base_url: String,
    /// The bearer token clients must present.
    pub bearer_token: String,
    /// The most resources one list returns.
    pub max_results: u32,
    /// The most operations one bulk request may hold.
    pub bulk_max_operations: u32,
    /// The largest request body accepted, in bytes.
    pub bulk_max_payload: u64,
    /// The provisioning policy JSON; empty for the default mapping.
    pub policy_json: String,
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("base_url", &self.base_url)
            .field("bearer_token", &"<redacted>")
            .field("max_results", &self.max_results)
            .field("bulk_max_operations", &self.bulk_max_operations)
            .field("bulk_max_payload", &self.bulk_max_payload)
            .field("policy_json", &self.policy_json)
            .finish()
    }
}

impl ServerSettings {
    /// The WIT record, built only to be passed to `open`.
    fn to_wit(&self) -> ServerConfig {
        ServerConfig {
            base_url: self.base_url.clone(),
            bearer_token: self.bearer_token.clone(),
            max_results: self.max_results,
            bulk_max_operations: self.bulk_max_operations,
            bulk_max_payload: self.bulk_max_payload,
            policy_json: self.policy_json.clone(),
        }
    }
}

pub use scim_wasmtime_support::{DeadlineExceeded, MemoryLimitExceeded};

/// The environment variable naming the directory of the precompiled component; it wins
/// over a configured one.
pub const CACHE_ENV: &str = "SCIM_PROVISIONER_CACHE";

/// How often the epoch advances: the granularity of the deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The compiled component, ready to instantiate many times.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    pre: ProvisionerPre<HostState>,
    limits: GuestLimits,
    /// Where the compiled component came from.
    cache: CacheInfo,
    /// The epoch ticker, stopped when the last runtime clone goes.
    _ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// Where host-example's build script put the component.
    pub fn built_component_path() -> PathBuf {
        PathBuf::from(env!("SCIM_PROVISIONER_WASM"))
    }

    /// Loads the component at `path` and links its imports. The compiled component is
    /// kept in the directory [`CACHE_ENV`] names, else beside the `.wasm`. Instances run
    /// under the default [`GuestLimits`]; see [`Runtime::with_limits`].
    pub fn new(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        Self::with_cache_dir(path, None)
    }

    /// [`Runtime::new`] with the compiled component kept in `cache_dir` (beside the `.wasm`
    /// when `None`); [`CACHE_ENV`], when set, wins over both. A directory that cannot be
    /// written only costs a compile; a cache file that cannot be loaded is compiled again
    /// and replaced.
    pub fn with_cache_dir(
        path: impl AsRef<Path>,
        cache_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let from_env = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty());
        let cache_dir = from_env.as_deref().map(Path::new).or(cache_dir);
        let engine = scim_wasmtime_support::engine()?;
        let (component, cache) = scim_wasmtime_support::load_component(&engine, path, cache_dir)
            .with_context(|| format!("loading the component {}", path.display()))?;
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)?;
        let pre = ProvisionerPre::new(linker.instantiate_pre(&component)?)?;
        let ticker = EpochTicker::start(&engine, EPOCH_TICK)?;
        Ok(Runtime {
            engine,
            pre,
            limits: GuestLimits::default(),
            cache,
            _ticker: Arc::new(ticker),
        })
    }

    /// Where the compiled component came from: the precompiled file it was loaded from, or
    /// the one it was compiled into, and how long that took.
    pub fn cache_info(&self) -> &CacheInfo {
        &self.cache
    }

    /// The same compiled component, whose new instances run under `limits`.
    pub fn with_limits(mut self, limits: GuestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits new instances run under.
    pub fn limits(&self) -> GuestLimits {
        self.limits
    }

    /// A store under this runtime's limits: the memory cap as its limiter, and the
    /// deadline checked at every epoch tick while the guest runs.
    fn store(&self, state: HostState) -> Store<HostState> {
        let mut store = Store::new(&self.engine, state.with_limits(self.limits));
        store.limiter(|state| &mut state.guard.cap);
        store.epoch_deadline_callback(|ctx| {
            let guard = &ctx.data().guard;
            if Instant::now() >= guard.deadline {
                return Err(DeadlineExceeded {
                    deadline: guard.call_deadline(),
                }
                .into());
            }
            Ok(UpdateDeadline::Continue(1))
        });
        begin_call(&mut store);
        store
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
        let log = log.redact(settings.credentials.secrets());
        Ok(self
            .client_instance(settings, &log, dry_run)?
            .map(|live| Session {
                runtime: self.clone(),
                settings: settings.clone(),
                log,
                dry_run,
                live: Some(live),
                held: Vec::new(),
            }))
    }

    fn client_instance(
        &self,
        settings: &ConnectorSettings,
        log: &LogSink,
        dry_run: bool,
    ) -> anyhow::Result<Result<ClientLive, ProvisioningError>> {
        let policy = OriginPolicy::for_connector(&settings.base_url, &settings.policy_json)
            .unwrap_or_default();
        let mut http = HttpCapability::new(policy);
        if dry_run {
            http = http.dry_run();
        }
        let mut state = HostState::new(http, log.clone());
        if !dry_run {
            state = state.with_rate(crate::rate::for_target(&settings.base_url));
        }
        let mut store = self.store(state);
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
        begin_call(&mut store);
        let opened = bindings
            .scim_provisioner_client()
            .connector()
            .call_open(&mut store, &config)?;
        let connector = match opened {
            Ok(connector) => connector,
            Err(e) => return Ok(Err(e)),
        };
        begin_call(&mut store);
        let scope_fields = bindings
            .scim_provisioner_client()
            .connector()
            .call_scope_fields(&mut store, connector)?;
        Ok(Ok(ClientLive {
            store,
            bindings,
            connector,
            scope_fields,
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

    /// The component's own filter engine (the `selection` export) on a fresh instance:
    /// which of `resources` (SCIM JSON objects with `id` and `meta`) `search` selects, as
    /// indices in page order. host-example's directory links the core natively and never
    /// needs it; it is here for hosts written on this library and for the tests that
    /// prove the export. The outer error is a trap.
    pub fn select(
        &self,
        resources: &[String],
        search: &Search,
    ) -> anyhow::Result<Result<Selection, DirectoryError>> {
        let http = HttpCapability::new(OriginPolicy::deny_all());
        let mut store = self.store(HostState::new(http, LogSink::stderr(Level::Warn)));
        let bindings = self.pre.instantiate(&mut store)?;
        begin_call(&mut store);
        Ok(bindings
            .scim_provisioner_selection()
            .call_select(&mut store, resources, search)?)
    }

    /// [`Runtime::open_with_log`] with warnings and errors going to stderr.
    pub fn open(
        &self,
        settings: &ConnectorSettings,
    ) -> anyhow::Result<Result<Session, ProvisioningError>> {
        self.open_with_log(settings, LogSink::stderr(Level::Warn))
    }
}

/// The guest's time starts now: before every export call. A zero deadline stops the
/// guest at its first check (what the tests use to force a deadline trap).
fn begin_call(store: &mut Store<HostState>) {
    let guard = &mut store.data_mut().guard;
    guard.restart();
    let ticks = u64::from(!guard.call_deadline().is_zero());
    store.set_epoch_deadline(ticks);
}

/// Why opening an instance failed, with the directory it was to serve handed back.
enum ServerOpenFailure {
    Trap(anyhow::Error),
    Refused(ProvisioningError),
}

impl Runtime {
    /// Instantiates the component as a SCIM server over `directory`. The outer error is a
    /// trap; the inner one the component's refusal of the configuration. The session
    /// re-instantiates itself after a trap (see [`ServerSession::handle`]).
    pub fn open_server(
        &self,
        config: &ServerSettings,
        directory: Box<dyn DirectoryBackend>,
        log: LogSink,
    ) -> anyhow::Result<Result<ServerSession, ProvisioningError>> {
        match self.server_instance(config, directory, &log) {
            Ok(live) => Ok(Ok(ServerSession {
                runtime: self.clone(),
                config: config.clone(),
                log,
                live: Some(live),
                directory: None,
                fresh_instances: 0,
            })),
            Err((ServerOpenFailure::Trap(e), _)) => Err(e),
            Err((ServerOpenFailure::Refused(e), _)) => Ok(Err(e)),
        }
    }

    fn server_instance(
        &self,
        config: &ServerSettings,
        directory: Box<dyn DirectoryBackend>,
        log: &LogSink,
    ) -> Result<ServerLive, (ServerOpenFailure, Box<dyn DirectoryBackend>)> {
        let state = HostState::new(HttpCapability::new(OriginPolicy::deny_all()), log.clone())
            .with_directory(directory);
        let mut store = self.store(state);
        let give_back = |store: Store<HostState>, failure| {
            let directory = store.into_data().take_directory();
            match directory {
                Some(d) => Err((failure, d)),
                // Unreachable: the directory was put in above and only this takes it.
                None => Err((failure, Box::new(NoDirectory) as Box<dyn DirectoryBackend>)),
            }
        };
        let bindings = match self.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => return give_back(store, ServerOpenFailure::Trap(anyhow::Error::from(e))),
        };
        begin_call(&mut store);
        let opened = bindings
            .scim_provisioner_server()
            .scim_server()
            .call_open(&mut store, &config.to_wit());
        match opened {
            Ok(Ok(server)) => Ok(ServerLive {
                store,
                bindings,
                server,
            }),
            Ok(Err(refused)) => give_back(store, ServerOpenFailure::Refused(refused)),
            Err(e) => give_back(store, ServerOpenFailure::Trap(anyhow::Error::from(e))),
        }
    }
}

/// A stand-in that answers `unavailable`, should a directory ever be lost.
struct NoDirectory;

impl DirectoryBackend for NoDirectory {
    fn get(
        &mut self,
        _: crate::types::ResourceKind,
        _: &str,
    ) -> Result<Option<crate::types::StoredResource>, crate::types::DirectoryError> {
        Err(no_directory())
    }
    fn query(
        &mut self,
        _: crate::types::ResourceKind,
        _: &crate::types::Search,
    ) -> Result<crate::types::QueryPage, crate::types::DirectoryError> {
        Err(no_directory())
    }
    fn create(
        &mut self,
        _: crate::types::ResourceKind,
        _: &str,
        _: Option<&CmsUser>,
    ) -> Result<crate::types::StoredResource, crate::types::DirectoryError> {
        Err(no_directory())
    }
    fn replace(
        &mut self,
        _: crate::types::ResourceKind,
        _: &str,
        _: &str,
        _: Option<&CmsUser>,
        _: Option<&str>,
    ) -> Result<crate::types::StoredResource, crate::types::DirectoryError> {
        Err(no_directory())
    }
    fn delete(
        &mut self,
        _: crate::types::ResourceKind,
        _: &str,
    ) -> Result<bool, crate::types::DirectoryError> {
        Err(no_directory())
    }
}

fn no_directory() -> crate::types::DirectoryError {
    crate::types::DirectoryError::Unavailable("the directory was lost after a trap".into())
}

struct ServerLive {
    store: Store<HostState>,
    bindings: Provisioner,
    server: ResourceAny,
}

/// One instance of the component serving SCIM. After a trap the instance is discarded
/// and the next request is served by a fresh one over the same directory.
pub struct ServerSession {
    runtime: Runtime,
    config: ServerSettings,
    log: LogSink,
    live: Option<ServerLive>,
    /// The directory, while no instance holds it (after a trap).
    directory: Option<Box<dyn DirectoryBackend>>,
    fresh_instances: u64,
}

impl ServerSession {
    /// Answers one request. The error is a trap (the instance is then discarded); SCIM
    /// errors are responses.
    pub fn handle(&mut self, request: &ServerRequest) -> anyhow::Result<ServerResponse> {
        if self.live.is_none() {
            let directory = self
                .directory
                .take()
                .ok_or_else(|| anyhow!("the server lost its directory"))?;
            match self
                .runtime
                .server_instance(&self.config, directory, &self.log)
            {
                Ok(live) => {
                    self.live = Some(live);
                    self.fresh_instances += 1;
                }
                Err((failure, directory)) => {
                    self.directory = Some(directory);
                    return Err(match failure {
                        ServerOpenFailure::Trap(e) => e.context("starting a fresh instance"),
                        ServerOpenFailure::Refused(e) => anyhow!(
                            "a fresh instance refused the configuration: {}",
                            crate::describe_error(&e)
                        ),
                    });
                }
            }
        }
        let live = self.live.as_mut().ok_or_else(|| anyhow!("no instance"))?;
        begin_call(&mut live.store);
        let answer = live
            .bindings
            .scim_provisioner_server()
            .scim_server()
            .call_handle(&mut live.store, live.server, request);
        match answer {
            Ok(response) => Ok(response),
            Err(trap) => {
                if let Some(live) = self.live.take() {
                    self.directory = live.store.into_data().take_directory();
                }
                Err(anyhow::Error::from(trap))
            }
        }
    }

    /// How many fresh instances replaced a trapped one so far.
    pub fn fresh_instances(&self) -> u64 {
        self.fresh_instances
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        if let Some(live) = self.live.as_mut() {
            begin_call(&mut live.store);
            let _ = live.server.resource_drop(&mut live.store);
        }
    }
}

/// How `scope-fields` names the user's id.
const SCOPE_ID_FIELD: &str = "@id";

/// The user as `plan` needs it, given what the component said it reads (`scope-fields`):
/// only those fields, in the user's order, and an empty id unless `@id` is among them.
fn read_by_plan(user: &CmsUser, scope_fields: &[String]) -> CmsUser {
    let reads_id = scope_fields.iter().any(|f| f == SCOPE_ID_FIELD);
    CmsUser {
        id: if reads_id {
            user.id.clone()
        } else {
            String::new()
        },
        fields: user
            .fields
            .iter()
            .filter(|(name, _)| scope_fields.contains(name))
            .cloned()
            .collect(),
        active: user.active,
    }
}

struct ClientLive {
    store: Store<HostState>,
    bindings: Provisioner,
    connector: ResourceAny,
    /// The fields `plan` reads (the `scope-fields` export), asked once per instance.
    scope_fields: Vec<String>,
}

/// One instance of the component with an open connector. After a trap the instance is
/// discarded, and the next call opens the connector again on a fresh one (what the old
/// instance held in memory, such as a loaded remote index, is gone with it).
pub struct Session {
    runtime: Runtime,
    settings: ConnectorSettings,
    log: LogSink,
    dry_run: bool,
    live: Option<ClientLive>,
    /// Writes a dry run held back in instances since discarded.
    held: Vec<HeldRequest>,
}

impl Session {
    /// Runs one export call on a live instance (a fresh one after a trap). A trap
    /// discards the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut ClientLive) -> wasmtime::Result<R>,
    ) -> anyhow::Result<R> {
        if self.live.is_none() {
            match self
                .runtime
                .client_instance(&self.settings, &self.log, self.dry_run)
                .context("starting a fresh instance")?
            {
                Ok(live) => self.live = Some(live),
                Err(e) => {
                    return Err(anyhow!(
                        "a fresh instance could not open the connector: {}",
                        crate::describe_error(&e)
                    ));
                }
            }
        }
        let live = self.live.as_mut().ok_or_else(|| anyhow!("no instance"))?;
        begin_call(&mut live.store);
        match f(live) {
            Ok(r) => Ok(r),
            Err(trap) => {
                self.discard();
                Err(anyhow::Error::from(trap))
            }
        }
    }

    fn discard(&mut self) {
        if let Some(mut live) = self.live.take() {
            self.held.extend(live.store.data_mut().take_held());
        }
    }

    /// The most linear memory the current instance has held, in bytes (0 after a trap,
    /// until the next call): what to compare with [`GuestLimits::memory_limit_bytes`].
    pub fn peak_memory_bytes(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |l| l.store.data().guard.cap.peak())
    }

    /// False after a trap, until the next call starts a fresh instance.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Tests the connection. The outer error is a trap; the inner one the component's answer.
    pub fn test_connection(
        &mut self,
    ) -> anyhow::Result<Result<ServerCapabilities, ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_test_connection(&mut l.store, l.connector)
        })
    }

    /// Provisions one user after an event.
    pub fn provision(
        &mut self,
        user: &CmsUser,
        event: UserEvent,
        link: Option<&Link>,
    ) -> anyhow::Result<Result<ProvisionOutcome, ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_provision(&mut l.store, l.connector, user, event, link)
        })
    }

    /// What `provision` would do, decided without sending anything. Only what the scope
    /// reads crosses into the component (the `scope-fields` export): each string passed
    /// costs a copy into the guest and a free there, and `plan` reads no other.
    pub fn plan(&mut self, user: &CmsUser, event: UserEvent, linked: bool) -> anyhow::Result<Plan> {
        self.call(|l| {
            let cut = read_by_plan(user, &l.scope_fields);
            l.bindings.scim_provisioner_client().connector().call_plan(
                &mut l.store,
                l.connector,
                &cut,
                event,
                linked,
            )
        })
    }

    /// What `plan` reads of a user besides its active flag (the `scope-fields` export): the
    /// CMS fields the scope reads, and `@id` when it reads the id.
    pub fn scope_fields(&mut self) -> anyhow::Result<Vec<String>> {
        self.call(|l| Ok(l.scope_fields.clone()))
    }

    /// [`Session::plan`] with every field of the user passed across, as hosts did before the
    /// `scope-fields` export; the same plan, at the cost of copying each field in. For
    /// measuring what the cut saves (`bench`).
    pub fn plan_with_every_field(
        &mut self,
        user: &CmsUser,
        event: UserEvent,
        linked: bool,
    ) -> anyhow::Result<Plan> {
        self.call(|l| {
            l.bindings.scim_provisioner_client().connector().call_plan(
                &mut l.store,
                l.connector,
                user,
                event,
                linked,
            )
        })
    }

    /// Provisions several users at once, through `/Bulk` where the server supports it.
    pub fn provision_batch(&mut self, items: &[BatchItem]) -> anyhow::Result<BatchOutcome> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_provision_batch(&mut l.store, l.connector, items)
        })
    }

    /// Lists the remote users once so a first sync matches locally.
    pub fn index_remote_users(
        &mut self,
    ) -> anyhow::Result<Result<RemoteListing, ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_index_remote_users(&mut l.store, l.connector)
        })
    }

    /// The listed remote users as a document for [`Session::import_remote_index`].
    pub fn export_remote_index(&mut self) -> anyhow::Result<Option<String>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_export_remote_index(&mut l.store, l.connector)
        })
    }

    /// Loads remote users another session listed, instead of listing them again.
    pub fn import_remote_index(
        &mut self,
        document: &str,
    ) -> anyhow::Result<Result<u32, ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_import_remote_index(&mut l.store, l.connector, document)
        })
    }

    /// The ids of the remote users the last listing held (see
    /// [`Session::index_remote_users`]); empty when nothing was listed.
    pub fn remote_user_ids(&mut self) -> anyhow::Result<Vec<String>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_remote_user_ids(&mut l.store, l.connector)
        })
    }

    /// What the connector learned about the server (schema, PATCH, filters, paging, the
    /// last connection test's findings), as a document to keep with the connection.
    pub fn export_dialect(&mut self) -> anyhow::Result<String> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_export_dialect(&mut l.store, l.connector)
        })
    }

    /// Loads what [`Session::export_dialect`] gave, so this session starts out knowing.
    pub fn import_dialect(
        &mut self,
        document: &str,
    ) -> anyhow::Result<Result<(), ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_import_dialect(&mut l.store, l.connector, document)
        })
    }

    /// The writes a dry-run session held back.
    pub fn take_held(&mut self) -> Vec<HeldRequest> {
        let mut held = std::mem::take(&mut self.held);
        if let Some(live) = self.live.as_mut() {
            held.extend(live.store.data_mut().take_held());
        }
        held
    }

    /// Reads one remote user as JSON.
    pub fn get_user(
        &mut self,
        remote_id: &str,
    ) -> anyhow::Result<Result<Option<String>, ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_get_user(&mut l.store, l.connector, remote_id)
        })
    }

    /// The SCIM resource a user maps to, as JSON.
    pub fn map_user(
        &mut self,
        user: &CmsUser,
    ) -> anyhow::Result<Result<String, ProvisioningError>> {
        self.call(|l| {
            l.bindings
                .scim_provisioner_client()
                .connector()
                .call_map_user(&mut l.store, l.connector, user)
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Drop the guest resource so its destructor runs; a failure here has nowhere to
        // go. A trapped instance is already gone and is never called again.
        if let Some(live) = self.live.as_mut() {
            begin_call(&mut live.store);
            let _ = live.connector.resource_drop(&mut live.store);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FieldValue;

    /// What crosses into `plan`: only the fields `scope-fields` names, in the user's order
    /// (a repeated name kept), the id only when `@id` is named, `active` as it is.
    #[test]
    fn plan_is_passed_only_what_the_scope_reads() {
        let text = |s: &str| FieldValue::Text(s.into());
        let user = CmsUser {
            id: "42".into(),
            fields: vec![
                ("name".into(), text("ann")),
                ("roles".into(), FieldValue::TextList(vec!["member".into()])),
                ("mail".into(), text("ann@example.org")),
                ("level".into(), FieldValue::Number(3.0)),
                ("roles".into(), FieldValue::TextList(vec!["editor".into()])),
            ],
            active: false,
        };
        let scope = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let names = |u: &CmsUser| u.fields.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();

        let cut = read_by_plan(&user, &scope(&["level", "roles"]));
        assert_eq!(names(&cut), ["roles", "level", "roles"]);
        assert!(matches!(cut.fields[1].1, FieldValue::Number(n) if n == 3.0));
        assert_eq!((cut.id.as_str(), cut.active), ("", false));

        let cut = read_by_plan(&user, &scope(&["@id"]));
        assert!(cut.fields.is_empty());
        assert_eq!(cut.id, "42");

        let cut = read_by_plan(&user, &[]);
        assert!(cut.fields.is_empty() && cut.id.is_empty());
    }

    /// No host type that holds a secret shows it through `Debug`: the settings the
    /// callers build, and the records the runtime builds from them are never formatted.
    #[test]
    fn settings_never_show_their_secrets_in_debug() {
        let secret = "s3cr3t-T0ken-value";
        let connector = |credentials| ConnectorSettings {
            base_url: "https://idp.example/scim/v2".into(),
            credentials,
            timeout_ms: 1_000,
            policy_json: String::new(),
        };
        let shown = [
            format!("{:?}", connector(Credentials::Bearer(secret.into()))),
            format!(
                "{:?}",
                connector(Credentials::Basic {
                    username: "admin".into(),
                    password: secret.into(),
                })
            ),
            format!(
                "{:?}",
                ServerSettings {
                    base_url: "https://cms.example/scim/v2".into(),
                    bearer_token: secret.into(),
                    max_results: 200,
                    bulk_max_operations: 100,
                    bulk_max_payload: 1 << 20,
                    policy_json: String::new(),
                }
            ),
        ];
        for text in &shown {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        assert!(shown[1].contains("admin"), "the user name is not a secret");
    }
}
