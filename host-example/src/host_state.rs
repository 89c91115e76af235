//! The host's half of the component: one struct, [`HostState`], holds everything a
//! wasmtime store carries (WASI, the resource table, and the `http-client`, `logging` and
//! `directory` capabilities), implements the generated `Host` traits, and
//! [`add_to_linker`] wires them all into a linker. The SQLite directory and any other
//! directory plug in through [`DirectoryBackend`].

use std::time::{Duration, Instant};

use scim_wasmtime_support::MemoryCap;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::Provisioner;
use crate::bindings::scim::provisioner::directory as dir;
use crate::bindings::scim::provisioner::{http_client, logging};
use crate::http::{HeldRequest, HttpCapability};
use crate::limits::GuestLimits;
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

/// The limits a store enforces: the memory cap (the store's limiter) and the deadline the
/// epoch callback checks.
pub(crate) struct Guard {
    limits: GuestLimits,
    /// The memory cap, as the store's `ResourceLimiter`.
    pub(crate) cap: MemoryCap,
    /// When the guest must have returned or called the host by.
    pub(crate) deadline: Instant,
}

impl Guard {
    fn new(limits: GuestLimits) -> Self {
        let mut guard = Guard {
            limits,
            cap: MemoryCap::new(limits.memory_limit_bytes),
            deadline: Instant::now(),
        };
        guard.restart();
        guard
    }

    /// The guest's time starts now: at an export call, and when the host answers one of
    /// its calls (the host's time, a slow server say, is not the guest's).
    pub(crate) fn restart(&mut self) {
        self.deadline = Instant::now()
            .checked_add(self.limits.call_deadline)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    }

    pub(crate) fn call_deadline(&self) -> Duration {
        self.limits.call_deadline
    }
}

/// Everything a store holds: WASI state and the host capabilities.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: HttpCapability,
    /// The adaptive rate control of the client's SCIM target (see [`crate::rate`]).
    rate: Option<std::sync::Arc<crate::rate::TargetRate>>,
    log: LogSink,
    /// The directory behind the server role; none for client-only sessions.
    directory: Option<Box<dyn DirectoryBackend>>,
    pub(crate) guard: Guard,
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
            rate: None,
            log,
            directory: None,
            guard: Guard::new(GuestLimits::default()),
        }
    }

    /// State whose WASI context is the one given (used by the test runner).
    pub fn with_wasi(wasi: WasiCtx, http: HttpCapability, log: LogSink) -> Self {
        HostState {
            wasi,
            table: ResourceTable::new(),
            http,
            rate: None,
            log,
            directory: None,
            guard: Guard::new(GuestLimits::default()),
        }
    }

    /// The same state sending through `rate`, the adaptive rate control of its target.
    pub fn with_rate(mut self, rate: std::sync::Arc<crate::rate::TargetRate>) -> Self {
        self.rate = Some(rate);
        self
    }

    /// The same state under `limits` (the runtime sets them on every store it makes).
    pub fn with_limits(mut self, limits: GuestLimits) -> Self {
        self.guard = Guard::new(limits);
        self
    }

    /// Takes the directory back out (to serve it from a fresh instance after a trap).
    pub(crate) fn take_directory(&mut self) -> Option<Box<dyn DirectoryBackend>> {
        self.directory.take()
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
        let answer = match &self.rate {
            Some(rate) => {
                let http = &mut self.http;
                rate.send(request, &mut |r| http.send(r))
            }
            None => self.http.send(request),
        };
        // Time held by the rate control is the host's, not the guest's.
        self.guard.restart();
        answer
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
        let answer = self.directory()?.get(kind, &id);
        self.guard.restart();
        answer
    }

    fn query(&mut self, kind: ResourceKind, search: Search) -> Result<QueryPage, DirectoryError> {
        let answer = self.directory()?.query(kind, &search);
        self.guard.restart();
        answer
    }

    fn create(
        &mut self,
        kind: ResourceKind,
        json: String,
        cms: Option<CmsUser>,
    ) -> Result<StoredResource, DirectoryError> {
        let answer = self.directory()?.create(kind, &json, cms.as_ref());
        self.guard.restart();
        answer
    }

    fn replace(
        &mut self,
        kind: ResourceKind,
        id: String,
        json: String,
        cms: Option<CmsUser>,
        if_version: Option<String>,
    ) -> Result<StoredResource, DirectoryError> {
        let answer =
            self.directory()?
                .replace(kind, &id, &json, cms.as_ref(), if_version.as_deref());
        self.guard.restart();
        answer
    }

    fn delete(&mut self, kind: ResourceKind, id: String) -> Result<bool, DirectoryError> {
        let answer = self.directory()?.delete(kind, &id);
        self.guard.restart();
        answer
    }
}

/// Adds WASI and the component's own imports to a linker: the one place that wires them.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    Provisioner::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}
