//! Identifiers the host makes up: the SCIM ids of the SQLite directory's resources, and
//! the hash behind them (also used for fingerprints and for spreading users over workers).

use std::sync::atomic::{AtomicU64, Ordering};

/// FNV-1a, 64 bits: stable across runs and Rust versions, unlike `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A fresh id in the shape of a version-4 UUID, from the clock, the process and a counter.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    )
    .unwrap_or(0);
    let a = fnv1a(&[t.to_le_bytes(), n.to_le_bytes()].concat());
    let pid = u64::from(std::process::id());
    let b = fnv1a(&[n.to_le_bytes(), t.to_le_bytes(), pid.to_le_bytes()].concat());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    )
}
