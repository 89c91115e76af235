//! What one store holds, and the exchange through which a suspended import call meets the
//! host that answers it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::Value;
use wasmtime::ResourceLimiter;
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

/// The memory cap: a grow past it traps with a message that says so, instead of handing
/// the guest an allocation failure it would turn into an anonymous abort.
#[derive(Debug)]
pub struct MemoryCap {
    /// The most linear memory, in bytes.
    pub limit: usize,
}

/// The trap a memory cap raises.
#[derive(Debug)]
pub struct MemoryLimitExceeded {
    /// What the guest asked for.
    pub desired: usize,
    /// The cap.
    pub limit: usize,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory limit exceeded: the guest asked for {} bytes of linear memory; the limit is {}",
            self.desired, self.limit
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

/// The trap a deadline raises.
#[derive(Debug)]
pub struct DeadlineExceeded {
    /// The deadline, in milliseconds.
    pub deadline_ms: u128,
}

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deadline exceeded: the guest ran for more than {} ms without returning or calling the host",
            self.deadline_ms
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.limit,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

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
            cap: MemoryCap {
                limit: memory_limit,
            },
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
