//! The limits every instance of the component runs under, as a host configures them. A
//! leaf: the runtime sets them on each store, and the host state's guard enforces them.

use std::time::Duration;

/// The limits every instance of the component runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    /// The most linear memory one instance may hold, in bytes. Default 512 MiB: a
    /// 100,000-user listing (about 1 KiB of JSON per user, parsed into values several
    /// times that size, plus the index the listing builds and its exported document) peaks
    /// well under it, while a runaway guest is stopped long before it can exhaust the
    /// host; a single response body is capped at 32 MiB anyway.
    pub memory_limit_bytes: usize,
    /// How long the guest may run in an export call without returning or calling the
    /// host. Default 10 s: normal calls take milliseconds between two host calls; a loop
    /// that never ends is cut within seconds. The host's own time (an HTTP request, a
    /// SQLite query) does not count: each answer restarts the clock.
    pub call_deadline: Duration,
}

impl GuestLimits {
    /// The default memory cap, in MiB.
    pub const DEFAULT_MEMORY_MB: u32 = 512;
    /// The default deadline, in seconds.
    pub const DEFAULT_DEADLINE_SECS: u32 = 10;
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            memory_limit_bytes: (Self::DEFAULT_MEMORY_MB as usize) << 20,
            call_deadline: Duration::from_secs(u64::from(Self::DEFAULT_DEADLINE_SECS)),
        }
    }
}
