//! What one store holds, and the exchange through which a suspended import call meets the
//! host that answers it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// An import call the guest is waiting on, for the host to perform.
#[derive(Debug, Clone)]
pub struct PendingImport {
    /// The interface, such as `scim:provisioner/http-client@0.1.0`.
    pub interface: String,
    /// The function, such as `send`.
    pub func: String,
    /// The arguments as canonical JSON.
    pub args: Vec<Value>,
}

/// Shared between the store (the import futures, the deadline callback, the logger) and
/// the driver that polls the call.
#[derive(Debug)]
pub struct Exchange {
    /// Set by an import future, taken by the driver.
    pub pending: Option<PendingImport>,
    /// Set by the driver on resume, taken by the import future.
    pub answer: Option<Value>,
    /// Log lines since the last step, as `(level, message)`.
    pub logs: Vec<(String, String)>,
    /// When the guest must have yielded or returned by; reset on every host answer.
    pub deadline: Instant,
}

/// A cloneable handle on the exchange.
#[derive(Debug, Clone)]
pub struct SharedExchange(Arc<Mutex<Exchange>>);

impl SharedExchange {
    /// An empty exchange.
    pub fn new() -> Self {
        SharedExchange(Arc::new(Mutex::new(Exchange {
            pending: None,
            answer: None,
            logs: Vec::new(),
            deadline: Instant::now(),
        })))
    }

    /// The exchange, even after a panic elsewhere poisoned the lock: it holds plain data.
    pub fn lock(&self) -> MutexGuard<'_, Exchange> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub use scim_wasmtime_support::{DeadlineExceeded, MemoryCap, MemoryLimitExceeded};

/// Everything one store holds.
pub struct BridgeState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap.
    pub cap: MemoryCap,
    /// The exchange with the driver.
    pub exchange: SharedExchange,
}

impl BridgeState {
    /// State with no filesystem, environment or network: the guest reaches out only
    /// through its own imports.
    pub fn new(memory_limit: usize, exchange: SharedExchange) -> Self {
        BridgeState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            cap: MemoryCap::new(memory_limit),
            exchange,
        }
    }
}

impl WasiView for BridgeState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
