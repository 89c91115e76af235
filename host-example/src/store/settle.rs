//! Settling a delivered batch at once, and keeping a worker's leases while it delivers.
//!
//! [`Store::settle`] records a whole batch's outcomes in one transaction: on a shared
//! database with a constant number of statements whatever the batch's size (one locking
//! read of what this worker still holds, one `DELETE`, one multi-row `UPDATE` for the
//! failures, one multi-row link upsert, one link `DELETE`, one multi-row log `INSERT`; see
//! [`super::SharedStore::settle`]), instead of three statements per event.
//!
//! [`Store::keep_leases`] starts a [`LeaseKeeper`]: a thread with its own connection that
//! extends this worker's lease on the events it is delivering every third of the lease,
//! so a batch may take longer than `claim_lease_secs` (the component sends the batch's
//! bulk requests within one call, so the host cannot act between them; a thread can).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Backend, LogEntry, Store};
use crate::database::{DatabaseUrl, Db};
use crate::types::Link;

/// One event's outcome, as [`Store::settle`] records it.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The event.
    pub seq: i64,
    /// Its user.
    pub user_id: String,
    /// What happened to it.
    pub outcome: SettleOutcome,
    /// The log line written with it.
    pub log: LogEntry,
}

/// Delivered or failed.
#[derive(Debug, Clone)]
pub enum SettleOutcome {
    /// Delivered: the event leaves the outbox and the user's link is saved (or, with
    /// `None`, removed: a deleted user is not tracked any more).
    Delivered {
        /// The link to keep.
        link: Option<Link>,
        /// The user's fingerprint as delivered.
        fingerprint: String,
    },
    /// Failed: retried at `next_attempt_ms`, or parked. The lease ends.
    Failed {
        /// Attempts so far, this one included.
        attempts: u32,
        /// When to try again.
        next_attempt_ms: i64,
        /// What went wrong.
        error: String,
        /// Given up for good.
        park: bool,
    },
}

impl Store {
    /// Records a batch's outcomes in one transaction and returns the events it settled.
    ///
    /// On SQLite that is every one. On a shared database it is those this worker still
    /// holds (or that no worker holds: a delivery nobody else took over): an event whose
    /// lease ran out and that another worker claimed since is left alone, with its link and
    /// its log line, for that worker to settle; removing it now would let the user's next
    /// event overtake the other worker's delivery of this one.
    pub fn settle(&mut self, settlements: &[Settlement]) -> anyhow::Result<Vec<i64>> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        // A deadlock (InnoDB has been seen to report one between two settles of disjoint
        // batches) rolls the whole transaction back: it is simply run again. Inside an
        // outer transaction, the caller's to retry.
        let mut attempt = 1;
        loop {
            match self.settle_once(settlements) {
                Err(e) if self.depth == 0 && attempt < SETTLE_ATTEMPTS && is_conflict(&e) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(5 * attempt));
                }
                result => return result,
            }
        }
    }

    fn settle_once(&mut self, settlements: &[Settlement]) -> anyhow::Result<Vec<i64>> {
        let worker = self.worker.clone();
        self.batch(|store| match &mut store.backend {
            Backend::Shared(s) => s.settle(&worker, settlements),
            Backend::Sqlite(s) => {
                for item in settlements {
                    match &item.outcome {
                        SettleOutcome::Delivered { link, fingerprint } => {
                            s.save_link(&item.user_id, link.as_ref(), fingerprint)?;
                            s.complete_event(item.seq)?;
                        }
                        SettleOutcome::Failed {
                            attempts,
                            next_attempt_ms,
                            error,
                            park,
                        } => s.fail_event(item.seq, *attempts, *next_attempt_ms, error, *park)?,
                    }
                    s.append_log(&item.log)?;
                }
                Ok(settlements.iter().map(|i| i.seq).collect())
            }
        })
    }

    /// Extends this worker's lease on `seqs` to a full lease from now; returns those it
    /// still holds (all of them on SQLite, where nothing is leased).
    pub fn extend_claims(&mut self, seqs: &[i64]) -> anyhow::Result<Vec<i64>> {
        let lease = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        match &mut self.backend {
            Backend::Sqlite(_) => Ok(seqs.to_vec()),
            Backend::Shared(s) => {
                s.extend_claims(&self.worker, seqs, crate::clock::now_ms(), lease)
            }
        }
    }

    /// A [`LeaseKeeper`] for this worker's claims (`None` on SQLite, which leases nothing).
    /// It connects only when first given events to hold.
    pub fn keep_leases(&self) -> Option<LeaseKeeper> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Shared(s) => Some(LeaseKeeper::start(
                s.url().clone(),
                self.worker.clone(),
                self.lease,
            )),
        }
    }
}

/// How often a settle is tried when the database reports a deadlock.
const SETTLE_ATTEMPTS: u64 = 5;

/// A deadlock or serialization failure: the transaction was rolled back and may simply be
/// run again (PostgreSQL `40P01`/`40001`, MariaDB 1213, or its lock wait timeout 1205).
pub(super) fn is_conflict(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(e) = cause.downcast_ref::<postgres::Error>() {
            return e.code().is_some_and(|c| {
                *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                    || *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
            });
        }
        matches!(
            cause.downcast_ref::<mysql::Error>(),
            Some(mysql::Error::MySqlError(e)) if e.code == 1213 || e.code == 1205
        )
    })
}

enum KeeperCommand {
    /// Keep these events leased until told otherwise.
    Hold(Vec<i64>),
    /// Stop extending; answered once no extension is running.
    Release(Sender<()>),
}

/// Extends a worker's lease on the events it is delivering, from a thread of its own with
/// its own connection, every third of the lease, until released. It stops with its
/// handle (so a worker that dies, or hangs past the component's call deadline and is
/// stopped, stops extending and its events go to another worker after the lease).
///
/// An extension only touches rows still leased to this worker (`claimed_by`), so one that
/// lands late (after the batch was settled, or after another worker took an event over)
/// changes nothing. A failed extension (the database away) is retried at the next tick;
/// the settle's check of what is still held covers an extension that never came.
pub struct LeaseKeeper {
    commands: Option<Sender<KeeperCommand>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseKeeper {
    fn start(url: DatabaseUrl, worker: String, lease: Duration) -> LeaseKeeper {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lease-keeper".into())
            .spawn(move || keeper_loop(&url, &worker, lease, &rx))
            .ok();
        LeaseKeeper {
            commands: Some(tx),
            thread,
        }
    }

    /// Keeps `seqs` leased from now on (replacing what it held before).
    pub fn hold(&self, seqs: Vec<i64>) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(KeeperCommand::Hold(seqs));
        }
    }

    /// Stops extending, and returns once no extension is under way (so the settle that
    /// follows does not queue behind one).
    pub fn release(&self) {
        if let Some(tx) = &self.commands {
            let (done, wait) = mpsc::channel();
            if tx.send(KeeperCommand::Release(done)).is_ok() {
                let _ = wait.recv_timeout(Duration::from_secs(30));
            }
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        // Closing the channel ends the thread at its next wake-up.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn keeper_loop(
    url: &DatabaseUrl,
    worker: &str,
    lease: Duration,
    commands: &Receiver<KeeperCommand>,
) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let every = (lease / 3).max(Duration::from_millis(50));
    let mut db: Option<Db> = None;
    let mut held: Vec<i64> = Vec::new();
    let mut next = Instant::now() + every;
    loop {
        match commands.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(KeeperCommand::Hold(seqs)) => {
                // Just claimed: their lease is fresh.
                held = seqs;
                next = Instant::now() + every;
                continue;
            }
            Ok(KeeperCommand::Release(done)) => {
                held.clear();
                let _ = done.send(());
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        next = Instant::now() + every;
        if held.is_empty() {
            continue;
        }
        if db.is_none() {
            db = Db::connect(url).ok();
        }
        let Some(conn) = db.as_mut() else {
            continue;
        };
        let now = crate::clock::now_ms();
        match super::shared::extend_claims_on(conn, worker, &held, now, lease_ms) {
            // Events another worker took over are not this worker's to extend again.
            Ok(still) => held = still,
            // The connection is probably gone: a new one at the next tick.
            Err(_) => db = None,
        }
    }
}
