//! What every Rust host of the scim-provisioner component (host-example and the native
//! bridge) does with wasmtime, written once:
//!
//! - [`engine`]: the one engine configuration (the component model, epoch interruption).
//!   One configuration means one compatibility hash, so the hosts share a cache directory's
//!   precompiled component.
//! - [`precompiled`]: the precompiled-component cache. The component is compiled once and
//!   kept as a `.cwasm` keyed by the `.wasm`'s SHA-256 and the engine's compatibility hash;
//!   every later process maps it with `Component::deserialize_file` in milliseconds.
//! - [`limits`]: the guest limits: a memory cap that traps with [`MemoryLimitExceeded`],
//!   the [`DeadlineExceeded`] trap an epoch deadline raises, and the [`EpochTicker`].

#![deny(missing_docs)]

pub mod limits;
pub mod precompiled;

pub use limits::{DeadlineExceeded, EpochTicker, MemoryCap, MemoryLimitExceeded};
pub use precompiled::{CacheInfo, load_component};

/// The engine every Rust host runs the component on: the component model, and epoch
/// interruption for the deadline. The precompiled cache is keyed by this configuration, so
/// a host that changed it would simply compile again.
pub fn engine() -> anyhow::Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // `SCIM_PROFILE=perfmap` writes /tmp/perf-<pid>.map, so `perf record` names the guest's
    // functions: how the boundary's cost was found. Off by default; it changes no code.
    if std::env::var_os("SCIM_PROFILE").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    wasmtime::Engine::new(&config).map_err(anyhow::Error::from)
}
