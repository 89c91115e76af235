//! The native bridge: wasmtime 48 and the scim-provisioner component behind a small C ABI
//! (`include/scim_bridge.h`), for hosts that reach native code through an FFI (PHP first).
//!
//! Such a host is never called back. Each export call runs on a wasmtime async store; when
//! the guest calls an import the host serves (`http-client.send`, `directory.*`), the call
//! is suspended and the import comes back to the host as data; the host performs it and
//! resumes the call with the answer. Values cross as canonical JSON ([`canonical`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use scim_bridge::{Instance, Options, Runtime};
//!
//! # fn main() -> anyhow::Result<()> {
//! let runtime = Arc::new(Runtime::new("scim_provisioner.wasm".as_ref(), Options::default())?);
//! let mut instance = Instance::new(runtime)?;
//! let step = instance.call(&serde_json::json!({
//!     "interface": "scim:provisioner/client@0.1.0",
//!     "func": "[static]connector.open",
//!     "args": [{"base-url": "https://joomla.example/scim/v2", "auth": {"tag": "none"},
//!               "timeout-ms": 30000, "policy-json": ""}],
//! }));
//! assert_eq!(step["step"], "done");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod canonical;
mod ffi;
mod imports;
mod instance;
mod runtime;
mod select;
mod state;

pub use instance::Instance;
pub use runtime::{Options, Runtime};
pub use select::answer as select;
