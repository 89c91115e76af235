//! A bearer token kept as a hash that another process may replace: several `serve`
//! processes on one PostgreSQL or MariaDB check the hash kept in the database, and
//! `serve --new-token` on any of them replaces it; a `serve` on a SQLite file checks the
//! file's hash, which `serve-token rotate` replaces. Each process sees the rotation within a
//! bounded time:
//! - a refresher thread reads the stored hash again every [`RECHECK_EVERY`], so the old
//!   token is refused everywhere within about that long;
//! - a presented token that does not match asks for a read at once, taken at most once per
//!   [`MISMATCH_RECHECK_GAP`] (so wrong tokens cost the database at most one read a second
//!   a process; on a SQLite file, whose read is local, at most once per
//!   [`TokenHashSource::mismatch_recheck_gap`]), and the request waits for it up to
//!   [`MISMATCH_WAIT`]: the new token is accepted everywhere as soon as it is stored.
//!
//! Tokens are compared as their SHA-256, in constant time; neither a token nor its hash is
//! ever logged. What the database holds is what counts: a hash removed from it (or
//! damaged) admits no token until one is made again (`serve --new-token`). Only when the
//! database cannot be read at all (it is away) does the hash read last stay in force, and
//! one warning says so until a read succeeds again.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::token_hash;
use crate::logging::{Level, LogSink};

/// How often the stored hash is read again.
pub const RECHECK_EVERY: Duration = Duration::from_secs(2);
/// The shortest time between two reads that a token that does not match asks for.
pub const MISMATCH_RECHECK_GAP: Duration = Duration::from_secs(1);
/// The longest a request whose token does not match waits for a fresh read.
pub const MISMATCH_WAIT: Duration = Duration::from_secs(3);

/// Where a token's hash is kept and may be replaced by another process.
pub trait TokenHashSource: Send + Sync {
    /// The hash kept now; `None` when none is kept (or it is damaged): no token is
    /// admitted. An error when it cannot be read (the old one stays in force).
    fn read_hash(&self) -> anyhow::Result<Option<[u8; 32]>>;

    /// The shortest time between two reads that a token that does not match asks for:
    /// [`MISMATCH_RECHECK_GAP`] for a database server; a source whose read is a local
    /// file's (SQLite) may take a shorter one, so a wrong token is answered and a rotated
    /// one admitted sooner.
    fn mismatch_recheck_gap(&self) -> Duration {
        MISMATCH_RECHECK_GAP
    }
}

struct State {
    /// `None`: no token is admitted.
    hash: Option<[u8; 32]>,
    /// Raised after every read, successful or not.
    generation: u64,
    /// A request asked for a read (its token did not match).
    wanted: bool,
    /// A read is under way: it may have started before the rotation a request waits for.
    reading: bool,
    stopped: bool,
}

/// The hash in force, kept fresh by [`LiveTokenHash::run_refresher`].
pub(super) struct LiveTokenHash {
    source: Arc<dyn TokenHashSource>,
    state: Mutex<State>,
    /// Wakes the refresher (a request asked, or the server stops).
    wake: Condvar,
    /// Wakes the requests waiting for a read.
    refreshed: Condvar,
}

impl LiveTokenHash {
    /// Reads the hash in force from `source`; fails when it cannot be read or none is kept.
    pub(super) fn new(source: Arc<dyn TokenHashSource>) -> anyhow::Result<Arc<LiveTokenHash>> {
        let hash = source.read_hash()?;
        if hash.is_none() {
            anyhow::bail!("no server token is kept in the database: start with --new-token");
        }
        Ok(Arc::new(LiveTokenHash {
            source,
            state: Mutex::new(State {
                hash,
                generation: 0,
                wanted: false,
                reading: false,
                stopped: false,
            }),
            wake: Condvar::new(),
            refreshed: Condvar::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `presented` is the token in force. A token that does not match the hash
    /// read last waits for a fresh read (it may be a token just rotated in) and is
    /// compared again.
    pub(super) fn matches(&self, presented: &str) -> bool {
        let digest = token_hash(presented);
        let admitted = |hash: &Option<[u8; 32]>| hash.is_some_and(|h| bool::from(digest.ct_eq(&h)));
        let mut state = self.lock();
        if admitted(&state.hash) {
            return true;
        }
        if state.stopped {
            return false;
        }
        // A read already under way may have begun before the rotation: wait for the next.
        let target = state.generation + if state.reading { 2 } else { 1 };
        state.wanted = true;
        self.wake.notify_one();
        let deadline = Instant::now() + MISMATCH_WAIT;
        while state.generation < target && !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .refreshed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        admitted(&state.hash)
    }

    /// Reads the hash again every [`RECHECK_EVERY`], or sooner when a request asks (but
    /// not within [`MISMATCH_RECHECK_GAP`] of the last read), until [`LiveTokenHash::stop`].
    pub(super) fn run_refresher(&self, log: &LogSink) {
        let mut last_read = Instant::now();
        let mut failing = false;
        loop {
            let mut state = self.lock();
            loop {
                if state.stopped {
                    return;
                }
                let due = if state.wanted {
                    self.source.mismatch_recheck_gap()
                } else {
                    RECHECK_EVERY
                };
                let since = last_read.elapsed();
                if since >= due {
                    break;
                }
                state = self
                    .wake
                    .wait_timeout(state, due - since)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.wanted = false;
            state.reading = true;
            drop(state);
            let read = self.source.read_hash();
            last_read = Instant::now();
            let mut state = self.lock();
            match read {
                Ok(hash) => {
                    if hash.is_none() && state.hash.is_some() {
                        log.write(
                            Level::Warn,
                            "serve: the database keeps no valid server token; no request is \
                             admitted until one is made (serve --new-token)",
                        );
                    }
                    if failing {
                        log.write(
                            Level::Info,
                            "serve: the server token's hash is read from the database again",
                        );
                        failing = false;
                    }
                    state.hash = hash;
                }
                Err(e) if !failing => {
                    log.write(
                        Level::Warn,
                        &format!(
                            "serve: the server token's hash could not be read again ({e:#}); \
                             the one read last is checked until it can"
                        ),
                    );
                    failing = true;
                }
                Err(_) => {}
            }
            state.reading = false;
            state.generation += 1;
            self.refreshed.notify_all();
        }
    }

    /// Ends [`LiveTokenHash::run_refresher`] and releases waiting requests.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
        self.refreshed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A hash in memory that the test replaces, counting its reads.
    struct Memory {
        hash: Mutex<Option<[u8; 32]>>,
        reads: AtomicUsize,
    }

    impl TokenHashSource for Memory {
        fn read_hash(&self) -> anyhow::Result<Option<[u8; 32]>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(*self.hash.lock().unwrap())
        }
    }

    #[test]
    fn a_rotation_is_seen_at_once_for_the_new_token_and_soon_for_the_old() {
        let source = Arc::new(Memory {
            hash: Mutex::new(Some(token_hash("old-token"))),
            reads: AtomicUsize::new(0),
        });
        let live = LiveTokenHash::new(source.clone()).unwrap();
        let refresher = {
            let live = Arc::clone(&live);
            std::thread::spawn(move || live.run_refresher(&LogSink::memory().0))
        };
        assert!(live.matches("old-token"));
        *source.hash.lock().unwrap() = Some(token_hash("new-token"));
        // The new token asks for a read and waits for it.
        assert!(live.matches("new-token"));
        assert!(!live.matches("old-token"));
        // Wrong tokens are rate-limited: a burst costs at most one read a gap.
        let before = source.reads.load(Ordering::SeqCst);
        let started = Instant::now();
        for _ in 0..3 {
            assert!(!live.matches("wrong"));
        }
        let reads = source.reads.load(Ordering::SeqCst) - before;
        let gaps = started.elapsed().as_secs_f64() / MISMATCH_RECHECK_GAP.as_secs_f64();
        assert!(
            (reads as f64) <= gaps.ceil() + 1.0,
            "{reads} reads in {gaps} gaps"
        );
        live.stop();
        refresher.join().unwrap();
        assert!(!live.matches("wrong-after-stop"));
    }

    /// Without any request, the refresher alone replaces the hash within RECHECK_EVERY.
    #[test]
    fn the_old_token_is_refused_after_the_periodic_read() {
        let source = Arc::new(Memory {
            hash: Mutex::new(Some(token_hash("a"))),
            reads: AtomicUsize::new(0),
        });
        let live = LiveTokenHash::new(source.clone()).unwrap();
        let refresher = {
            let live = Arc::clone(&live);
            std::thread::spawn(move || live.run_refresher(&LogSink::memory().0))
        };
        *source.hash.lock().unwrap() = Some(token_hash("b"));
        let deadline = Instant::now() + RECHECK_EVERY * 10;
        while live.lock().hash != Some(token_hash("b")) {
            assert!(Instant::now() < deadline, "the hash was never read again");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!live.matches("a"));
        assert!(live.matches("b"));
        // A token removed from the database admits nothing.
        *source.hash.lock().unwrap() = None;
        let deadline = Instant::now() + RECHECK_EVERY * 10;
        while live.lock().hash.is_some() {
            assert!(Instant::now() < deadline, "the removal was never read");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!live.matches("b"));
        live.stop();
        refresher.join().unwrap();
    }
}
