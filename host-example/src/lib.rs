//! A wasmtime host for the scim-provisioner component.
//!
//! The host provides the component's imports (a narrow `http-client` bound to the configured
//! SCIM origin, and `logging`) and drives its exported client role. Everything SCIM-specific
//! happens inside the component; the host carries requests, stores and schedules.
//!
//! ```no_run
//! use host_example::{ConnectorSettings, Credentials, Flatten, Runtime};
//!
//! # fn main() -> anyhow::Result<()> {
//! let runtime = Runtime::new(Runtime::built_component_path())?;
//! let settings = ConnectorSettings {
//!     base_url: "https://joomla.example/api/scim/v2".into(),
//!     credentials: Credentials::Bearer("token".into()),
//!     timeout_ms: 30_000,
//!     policy_json: String::new(),
//! };
//! // One typed error (`host_example::Error`): the component's refusal, a guest limit, or other.
//! let mut session = runtime.connect(&settings)?;
//! let caps = session.test_connection().flatten_err()?;
//! println!("{caps:?}");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod database;
pub mod delivery;
pub mod demo;
pub mod describe;
pub mod dialect;
pub mod directory;
mod error;
mod host_state;
pub mod http;
pub mod ids;
// The command line's `users import` (csv): only with the `cli` feature.
#[cfg(feature = "cli")]
pub mod import;
mod limits;
pub mod logging;
pub mod metrics;
pub mod oauth2;
pub mod rate;
pub mod reconcile_shared;
mod runtime;
pub mod serve;
pub mod shared_in_flight;
mod sqlite_page_cache;
pub mod store;
pub mod sync;
pub mod sync_pages;

pub use describe::{action_label, describe_error};
pub use error::{Error, Flatten};
pub use host_state::{DirectoryBackend, HostState, add_to_linker};
pub use limits::GuestLimits;
pub use runtime::{
    CACHE_ENV, CacheInfo, ConnectorSettings, Credentials, DeadlineExceeded, MemoryLimitExceeded,
    Runtime, ServerSession, ServerSettings, Session,
};

/// Generated bindings for the `provisioner` world.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "provisioner",
        path: "../wit",
    });
}

/// The WIT types the host's callers see. The records that carry secrets
/// (`connector-config`, `auth`, `basic-credentials`, `server-config`) are not among them:
/// their generated `Debug` prints every field, so callers use [`ConnectorSettings`] and
/// [`ServerSettings`], whose `Debug` redacts, and the runtime builds the records only to
/// pass them to `open`.
pub mod types {
    pub use crate::bindings::exports::scim::provisioner::selection::Selection;
    pub use crate::bindings::exports::scim::provisioner::server::{ServerRequest, ServerResponse};
    pub use crate::bindings::scim::provisioner::directory::{
        DirectoryError, QueryPage, ResourceKind, Search, StoredResource,
    };
    pub use crate::bindings::scim::provisioner::types::{
        Action, BatchItem, BatchOutcome, BulkLimits, CmsUser, FieldValue, Link, MissingAttribute,
        Plan, PlannedAction, ProvisionOutcome, ProvisioningError, RemoteListing, RetryClass,
        ScimError, ServerCapabilities, TransportError, TransportFailure, UnexpectedResponse,
        UserEvent,
    };
}
