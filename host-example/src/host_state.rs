//! The host's half of the component: one struct, [`HostState`], holds everything a
//! wasmtime store carries (WASI, the resource table, and the `http-client`, `logging` and
//! `directory` capabilities), implements the generated `Host` traits, and
//! [`add_to_linker`] wires them all into a linker. The SQLite directory and any other
//! directory plug in through [`DirectoryBackend`].

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::Provisioner;
use crate::bindings::scim::provisioner::directory as dir;
use crate::bindings::scim::provisioner::{http_client, logging};
use crate::http::{HeldRequest, HttpCapability};
use crate::logging::LogSink;
use crate::types::{CmsUser, DirectoryError, QueryPage, ResourceKind, Search, StoredResource};

/// What the host side of `directory` must do.
pub trait DirectoryBackend: Send {
    /// The resource with this id.
    fn get(
        &mut self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<StoredResource>, DirectoryError>;
    /// One page of matching resources.
    fn query(&mut self, kind: ResourceKind, search: &Search) -> Result<QueryPage, DirectoryError>;
    /// Stores a new resource; `cms` is a user's CMS view (reverse-mapped by the component).
    fn create(
        &mut self,
        kind: ResourceKind,
        json: &str,
        cms: Option<&CmsUser>,
    ) -> Result<StoredResource, DirectoryError>;
    /// Replaces a resource; `cms` as for `create`.
    fn replace(
        &mut self,
        kind: ResourceKind,
        id: &str,
        json: &str,
        cms: Option<&CmsUser>,
        if_version: Option<&str>,
    ) -> Result<StoredResource, DirectoryError>;
    /// Deletes a resource.
    fn delete(&mut self, kind: ResourceKind, id: &str) -> Result<bool, DirectoryError>;
}

/// Everything a store holds: WASI state and the host capabilities.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: HttpCapability,
    log: LogSink,
    /// The directory behind the server role; none for client-only sessions.
    directory: Option<Box<dyn DirectoryBackend>>,
    /// The instance's resource limits (a memory cap), when the runtime sets one.
    pub(crate) limits: Option<wasmtime::StoreLimits>,
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
            limits: None,
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
            limits: None,
        }
    }

    /// The same state serving `directory` to the component's server role.
    pub fn with_directory(mut self, directory: Box<dyn DirectoryBackend>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The writes a dry-run HTTP capability held back.
    pub fn take_held(&mut self) -> Vec<HeldRequest> {
        self.http.take_held()
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
    fn directory(&mut self) -> Result<&mut Box<dyn DirectoryBackend>, DirectoryError> {
        self.directory
            .as_mut()
            .ok_or_else(|| DirectoryError::Unavailable("this host session has no directory".into()))
    }
}

impl dir::Host for HostState {
    fn get(
        &mut self,
        kind: ResourceKind,
        id: String,
    ) -> Result<Option<StoredResource>, DirectoryError> {
        self.directory()?.get(kind, &id)
    }

    fn query(&mut self, kind: ResourceKind, search: Search) -> Result<QueryPage, DirectoryError> {
        self.directory()?.query(kind, &search)
    }

    fn create(
        &mut self,
        kind: ResourceKind,
        json: String,
        cms: Option<CmsUser>,
    ) -> Result<StoredResource, DirectoryError> {
        self.directory()?.create(kind, &json, cms.as_ref())
    }

    fn replace(
        &mut self,
        kind: ResourceKind,
        id: String,
        json: String,
        cms: Option<CmsUser>,
        if_version: Option<String>,
    ) -> Result<StoredResource, DirectoryError> {
        self.directory()?
            .replace(kind, &id, &json, cms.as_ref(), if_version.as_deref())
    }

    fn delete(&mut self, kind: ResourceKind, id: String) -> Result<bool, DirectoryError> {
        self.directory()?.delete(kind, &id)
    }
}

/// Adds WASI and the component's own imports to a linker: the one place that wires them.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    Provisioner::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}
