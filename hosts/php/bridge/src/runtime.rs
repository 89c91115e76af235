//! The engine, the precompiled component and the linker: made once per process and shared
//! by every instance.
//!
//! The component is compiled once per cache directory (`scim_wasmtime_support::precompiled`,
//! shared with host-example): `Engine::precompile_component` writes a `.cwasm` keyed by the
//! `.wasm`'s SHA-256 and the engine's compatibility hash, and later loads map it with
//! `Component::deserialize_file`, so a PHP request never pays for a compile. A cache file
//! that cannot be loaded is compiled again and replaced.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use scim_wasmtime_support::EpochTicker;
use serde_json::{Value, json};
use wasmtime::Engine;
use wasmtime::component::{InstancePre, Linker};

use crate::imports;
use crate::state::BridgeState;

/// How often the epoch advances: the granularity of the guest's deadline.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The guest limits and where the compiled component is cached.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the `.cwasm` is kept; beside the `.wasm` when none is given.
    pub cache_dir: Option<PathBuf>,
    /// The most linear memory one instance may hold.
    pub memory_limit_bytes: usize,
    /// How long the guest may run between two host answers.
    pub deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_dir: None,
            // A 100,000-user listing fits with room to spare.
            memory_limit_bytes: 512 << 20,
            deadline: Duration::from_secs(10),
        }
    }
}

impl Options {
    /// Options from the JSON a host passes (`{}` or null for the defaults). Unknown keys are
    /// refused, so a misspelt limit is not silently ignored.
    pub fn from_json(json: &Value) -> anyhow::Result<Options> {
        let mut options = Options::default();
        let Some(obj) = json.as_object() else {
            return match json {
                Value::Null => Ok(options),
                _ => Err(anyhow!("options must be a JSON object")),
            };
        };
        for (key, value) in obj {
            match key.as_str() {
                "cache_dir" => {
                    options.cache_dir = match value {
                        Value::Null => None,
                        v => Some(PathBuf::from(
                            v.as_str()
                                .ok_or_else(|| anyhow!("cache_dir must be a string"))?,
                        )),
                    }
                }
                "memory_limit_bytes" => {
                    let n = value.as_u64().filter(|n| *n >= 1 << 20).ok_or_else(|| {
                        anyhow!("memory_limit_bytes must be a whole number of at least 1048576")
                    })?;
                    options.memory_limit_bytes = usize::try_from(n).unwrap_or(usize::MAX);
                }
                "deadline_ms" => {
                    let n = value.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                        anyhow!("deadline_ms must be a whole number of at least 1")
                    })?;
                    options.deadline = Duration::from_millis(n);
                }
                other => return Err(anyhow!("unknown option {other:?}")),
            }
        }
        Ok(options)
    }
}

/// The shared part of the bridge: engine, component, linked imports, options.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<BridgeState>,
    pub(crate) options: Options,
    pub(crate) tokio: tokio::runtime::Runtime,
    info: Value,
    /// Advances the epoch while this runtime lives.
    _ticker: EpochTicker,
}

impl Runtime {
    /// Loads the component at `wasm`, from the cache when it was compiled before.
    pub fn new(wasm: &Path, options: Options) -> anyhow::Result<Runtime> {
        let started = Instant::now();
        let engine = scim_wasmtime_support::engine()?;
        let (component, cache) =
            scim_wasmtime_support::load_component(&engine, wasm, options.cache_dir.as_deref())?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        imports::add_to_linker(&mut linker, &engine, &component)?;
        let pre = linker.instantiate_pre(&component)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("starting the bridge's event loop")?;
        let ticker = EpochTicker::start(&engine, EPOCH_TICK)?;
        let info = json!({
            "wasm": wasm.display().to_string(),
            "cache_file": cache.file.as_ref().map(|p| p.display().to_string()),
            "loaded_from_cache": cache.from_cache,
            "load_ms": started.elapsed().as_secs_f64() * 1000.0,
            "memory_limit_bytes": options.memory_limit_bytes,
            "deadline_ms": u64::try_from(options.deadline.as_millis()).unwrap_or(u64::MAX),
            "bridge_version": env!("CARGO_PKG_VERSION"),
        });
        Ok(Runtime {
            engine,
            pre,
            options,
            tokio,
            info,
            _ticker: ticker,
        })
    }

    /// What was loaded, from where, and how long it took.
    pub fn info(&self) -> &Value {
        &self.info
    }
}
