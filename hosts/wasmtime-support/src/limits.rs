//! The limits every Rust host puts on the scim-provisioner guest (host-example and the
//! native bridge): a memory cap that traps with [`MemoryLimitExceeded`], the
//! [`DeadlineExceeded`] trap an epoch deadline raises, and the [`EpochTicker`] thread that
//! advances the engine's epoch so a deadline can fire at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use wasmtime::{Engine, ResourceLimiter};

/// The trap a memory cap raises.
#[derive(Debug)]
pub struct MemoryLimitExceeded {
    /// What the guest asked for, in bytes.
    pub desired: usize,
    /// The cap, in bytes.
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
    /// The deadline.
    pub deadline: Duration,
}

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deadline exceeded: the guest ran for more than {} ms without returning or calling the host",
            self.deadline.as_millis()
        )
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A store's memory cap, as its `ResourceLimiter`.
#[derive(Debug, Clone, Copy)]
pub struct MemoryCap {
    /// The most linear memory one instance may hold, in bytes.
    pub limit: usize,
    /// The most linear memory granted so far, in bytes.
    peak: usize,
}

impl MemoryCap {
    /// A cap of `limit` bytes, nothing granted yet.
    pub fn new(limit: usize) -> MemoryCap {
        MemoryCap { limit, peak: 0 }
    }

    /// The most linear memory granted so far, in bytes: what a cap should be sized against.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A grow past the cap traps with a typed error that says so, instead of handing
        // the guest an allocation failure it would turn into an anonymous abort.
        if desired > self.limit {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.limit,
            }
            .into());
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The component's tables hold function references; a million is far beyond use.
        Ok(desired <= 1 << 20)
    }
}

/// The thread that advances an engine's epoch every `tick`; it stops when dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the thread. The tick is the deadline's granularity.
    pub fn start(engine: &Engine, tick: Duration) -> anyhow::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("scim-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .context("starting the deadline ticker")?
        };
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_a_grow_past_it_with_a_typed_trap() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(matches!(cap.memory_growing(0, 1 << 20, None), Ok(true)));
        assert_eq!(cap.peak(), 1 << 20);
        let err = cap.memory_growing(0, (1 << 20) + 1, None).err();
        let err = err.map(anyhow::Error::from);
        assert!(
            err.as_ref().is_some_and(|e| e.is::<MemoryLimitExceeded>()),
            "{err:?}"
        );
        assert!(matches!(cap.table_growing(0, 1 << 21, None), Ok(false)));
    }
}
