//! Delivering outbox events: each event goes through the component; what was delivered
//! leaves the outbox and updates the link, what failed stays with its retry time
//! (`Retry-After`, else exponential backoff with jitter) or is parked after too many
//! attempts. Nothing is ever dropped.

use std::collections::HashSet;
use std::time::Instant;

use crate::clock::{now_ms, now_rfc3339};
use crate::describe::{action_name, describe_error, error_status};
use crate::runtime::Session;
use crate::store::{LogEntry, OutboxEvent, SettleOutcome, Settlement, Store, event_name};
use crate::types::{BatchItem, ProvisionOutcome, ProvisioningError, RetryClass, UserEvent};

/// The first retry waits this long; each further one twice as long.
const BACKOFF_BASE_MS: i64 = 2_000;
/// No retry waits longer than this.
const BACKOFF_CAP_MS: i64 = 3_600_000;

/// What a delivery run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Events delivered.
    pub delivered: u64,
    /// Events that failed and will be retried.
    pub retrying: u64,
    /// Events that failed for good and were parked.
    pub parked: u64,
    /// Requests sent, bulk requests included.
    pub requests: u64,
    /// How many of them were bulk requests.
    pub bulk_requests: u64,
}

/// When to try again after `attempts` failures of this class: `Retry-After` as given,
/// otherwise exponential backoff with ±25 % jitter so retries of many events spread out.
pub fn next_attempt_ms(now: i64, attempts: u32, retry: &RetryClass, seed: u64) -> i64 {
    let delay = match retry {
        RetryClass::AfterSeconds(s) => i64::from((*s).max(1)) * 1000,
        RetryClass::Backoff | RetryClass::Permanent => {
            let exp = BACKOFF_BASE_MS.saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
            let capped = exp.min(BACKOFF_CAP_MS);
            // seed-derived jitter in [-25 %, +25 %]
            let spread = capped / 2;
            let jitter = if spread > 0 {
                i64::try_from(seed % u64::try_from(spread).unwrap_or(1)).unwrap_or(0) - spread / 2
            } else {
                0
            };
            capped + jitter
        }
    };
    now.saturating_add(delay)
}

/// Delivers due events until none is left that has not been tried in this run. With
/// `drain`, retry times are not waited for.
///
/// On a shared database each batch is claimed for this worker under its lease, which a
/// [`crate::store::LeaseKeeper`] extends while the batch is being delivered; the batch is
/// then settled in one transaction, for the events this worker still holds.
pub fn deliver(
    store: &mut Store,
    session: &mut Session,
    policy_json: &str,
    max_attempts: u32,
    drain: bool,
) -> anyhow::Result<DeliveryReport> {
    let mut report = DeliveryReport::default();
    let mut tried: HashSet<i64> = HashSet::new();
    // Started (and connected) once per run, on a shared database only.
    let keeper = store.keep_leases();
    loop {
        // Events tried in this run may still be due (a drain ignores retry times): ask
        // for enough rows to see past them, or the events queued behind would starve.
        let limit = 256u32.saturating_add(u32::try_from(tried.len()).unwrap_or(u32::MAX));
        // On a shared database, one batch at a time is claimed for this worker under a
        // lease: claiming more would hold events other workers could deliver meanwhile.
        // What it claims is due and this worker's to deliver, tried before or not (a
        // failed event is claimable again only once its retry time has come).
        let shared = store.is_shared();
        let limit = if shared { DELIVERY_BATCH as u32 } else { limit };
        let events: Vec<OutboxEvent> = store
            .claim_due(now_ms(), drain, limit)?
            .into_iter()
            .filter(|e| shared || !tried.contains(&e.seq))
            .collect();
        if events.is_empty() {
            let (waiting, parked) = store.outbox_depth()?;
            crate::metrics::global().set_outbox(waiting, parked);
            return Ok(report);
        }
        // Due events belong to distinct users (only each user's oldest is due), so a
        // batch of them may share bulk requests without reordering anyone's changes.
        for batch in events.chunks(DELIVERY_BATCH) {
            tried.extend(batch.iter().map(|e| e.seq));
            if let Some(keeper) = &keeper {
                keeper.hold(batch.iter().map(|e| e.seq).collect());
            }
            let delivered = deliver_batch(
                store,
                session,
                policy_json,
                max_attempts,
                batch,
                keeper.as_ref(),
                &mut report,
            );
            if let Some(keeper) = &keeper {
                keeper.release();
            }
            delivered?;
        }
    }
}

/// Events handed to the component per call when several are due (a drain, or a backlog
/// after an outage).
const DELIVERY_BATCH: usize = 100;

fn deliver_batch(
    store: &mut Store,
    session: &mut Session,
    policy_json: &str,
    max_attempts: u32,
    events: &[OutboxEvent],
    keeper: Option<&crate::store::LeaseKeeper>,
    report: &mut DeliveryReport,
) -> anyhow::Result<()> {
    let mut items = Vec::with_capacity(events.len());
    for event in events {
        items.push(BatchItem {
            user: event.user.to_cms_user(),
            event: event.event,
            link: store.link(&event.user_id)?.map(|l| l.link),
        });
    }
    let started = Instant::now();
    let result = session.provision_batch(&items);
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
        / events.len().max(1) as u64;
    // Settling waits for no lease extension (and needs none: it checks what it holds).
    if let Some(keeper) = keeper {
        keeper.release();
    }
    let outcomes: Vec<Outcome> = match result {
        Ok(outcome) => {
            report.requests += u64::from(outcome.requests);
            report.bulk_requests += u64::from(outcome.bulk_requests);
            events
                .iter()
                .zip(outcome.results)
                .map(|(event, result)| {
                    outcome_of(policy_json, max_attempts, event, Ok(result), duration_ms)
                })
                .collect()
        }
        Err(trap) => events
            .iter()
            .map(|event| {
                outcome_of(
                    policy_json,
                    max_attempts,
                    event,
                    Err(anyhow::anyhow!("{trap:#}")),
                    duration_ms,
                )
            })
            .collect(),
    };
    // A batch's outcomes are recorded in one transaction, with a constant number of
    // statements on a shared database (the difference between the queue keeping up or
    // not). Only what this worker still holds is recorded: an event whose lease ran out
    // and that another worker took over is that worker's to settle.
    let settlements: Vec<Settlement> = outcomes.iter().map(|o| o.settlement.clone()).collect();
    let settled: HashSet<i64> = store.settle(&settlements)?.into_iter().collect();
    for outcome in outcomes
        .iter()
        .filter(|o| settled.contains(&o.settlement.seq))
    {
        crate::metrics::global().delivery_result(
            outcome.event,
            outcome.action,
            outcome.retry_reason,
        );
        match outcome.settlement.outcome {
            SettleOutcome::Delivered { .. } => report.delivered += 1,
            SettleOutcome::Failed { park: true, .. } => report.parked += 1,
            SettleOutcome::Failed { park: false, .. } => report.retrying += 1,
        }
    }
    Ok(())
}

/// One event's outcome: what to record, and what to count once it is recorded.
struct Outcome {
    settlement: Settlement,
    event: UserEvent,
    /// What was done, when it was delivered.
    action: Option<crate::types::Action>,
    /// Why it will be retried, when it will.
    retry_reason: Option<&'static str>,
}

/// What one event's delivery comes to: delivered events leave the outbox and update the
/// link; failed ones stay with their retry time, or are parked.
fn outcome_of(
    policy_json: &str,
    max_attempts: u32,
    event: &OutboxEvent,
    result: anyhow::Result<Result<ProvisionOutcome, ProvisioningError>>,
    duration_ms: u64,
) -> Outcome {
    let mut log = LogEntry {
        at: now_rfc3339(),
        user_id: event.user_id.clone(),
        operation: event_name(event.event).to_string(),
        http_status: None,
        outcome: String::new(),
        error: None,
        duration_ms,
    };
    let failure = match result {
        Ok(Ok(outcome)) => {
            let fingerprint = event.user.fingerprint(policy_json);
            // A deleted user is deprovisioned for good: stop tracking its remote twin, or
            // every later sync would count it against the deprovisioning threshold again.
            let link = outcome.link.filter(|_| event.event != UserEvent::Deleted);
            log.outcome = action_name(outcome.action).to_string();
            log.error = outcome.reason;
            return Outcome {
                settlement: Settlement {
                    seq: event.seq,
                    user_id: event.user_id.clone(),
                    outcome: SettleOutcome::Delivered { link, fingerprint },
                    log,
                },
                event: event.event,
                action: Some(outcome.action),
                retry_reason: None,
            };
        }
        Ok(Err(e)) => (
            describe_error(&e),
            retry_class(&e),
            error_status(&e),
            crate::metrics::retry_reason(&e),
        ),
        // A trap is a host-side failure: keep the event and try again later.
        Err(trap) => (
            format!("component trap: {trap:#}"),
            RetryClass::Backoff,
            None,
            crate::metrics::RETRY_TRAP,
        ),
    };
    let (message, retry, status, reason) = failure;
    let attempts = event.attempts.saturating_add(1);
    let park = matches!(retry, RetryClass::Permanent) || attempts >= max_attempts;
    let seed = u64::try_from(event.seq)
        .unwrap_or(0)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::try_from(now_ms()).unwrap_or(0);
    let next = next_attempt_ms(now_ms(), attempts, &retry, seed);
    log.outcome = "failed".into();
    log.http_status = status;
    log.error = Some(message.clone());
    Outcome {
        settlement: Settlement {
            seq: event.seq,
            user_id: event.user_id.clone(),
            outcome: SettleOutcome::Failed {
                attempts,
                next_attempt_ms: next,
                error: message,
                park,
            },
            log,
        },
        event: event.event,
        action: None,
        retry_reason: (!park).then_some(reason),
    }
}

/// The retry class a failure carries. The component classifies every failure it reports,
/// transport failures included (`transport-failure.retry`); the host does not guess. What
/// carries no class (a configuration or mapping problem) will not heal by retrying.
fn retry_class(error: &ProvisioningError) -> RetryClass {
    match error {
        ProvisioningError::Scim(s) => s.retry,
        ProvisioningError::UnexpectedResponse(u) => u.retry,
        ProvisioningError::Transport(t) => t.retry,
        ProvisioningError::InvalidConfig(_)
        | ProvisioningError::MissingAttribute(_)
        | ProvisioningError::Other(_) => RetryClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let d = |attempts, seed| next_attempt_ms(0, attempts, &RetryClass::Backoff, seed);
        assert!((1_500..=2_500).contains(&d(1, 7)));
        assert!((3_000..=5_000).contains(&d(2, 7)));
        assert!(d(30, 7) <= BACKOFF_CAP_MS * 5 / 4);
        assert_ne!(d(3, 1), d(3, 2_000), "jitter spreads retries");
        assert_eq!(
            next_attempt_ms(10, 1, &RetryClass::AfterSeconds(30), 0),
            30_010
        );
    }
}
