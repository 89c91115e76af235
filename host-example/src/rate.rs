//! Adaptive rate control per target in this host: every component instance of the process
//! that talks to one SCIM base URL sends through the same [`TargetRate`], which runs the
//! core's AIMD controller (`scim_provisioner::client::rate`) around each request. It holds
//! a request while the window is full, the pace has no slot, or the server's `Retry-After`
//! has not passed; learns from each answer; and sends a 429 again after its `Retry-After`
//! (a 503 too, for GET, PUT and DELETE) instead of handing it to the component, up to the
//! controller's limits. The last good setting is kept in the stored dialect document
//! ([`remember`]) and read back by [`prepare`], so the next run starts where this one left
//! off.
//!
//! Requests to other origins (an OAuth 2.0 token endpoint) pass untouched.
//!
//! Each request to the target also holds a slot of the cap every process on the shared
//! database shares, when `[host] server_in_flight` sets one ([`crate::shared_in_flight`]),
//! taken after this process's own admission and released when the answer is back.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scim_provisioner::client::rate::{
    self as core_rate, Admission, Answer, RateConfig, RateController, RateSetting, Verdict,
};
use scim_provisioner::client::response::parse_retry_after;

use crate::bindings::scim::provisioner::http_client::{
    HttpRequest, HttpResponse, Method, TransportError,
};
use crate::store::Store;

/// What a target's requests met, counted since the process started (or [`TargetRate::reset_stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RateStats {
    /// Requests sent to the target, each attempt counted.
    pub requests: u64,
    /// Answered 429.
    pub throttled: u64,
    /// Answered 503.
    pub unavailable: u64,
    /// Sent again after a 429 or 503, instead of handed to the component.
    pub retried: u64,
}

struct State {
    controller: RateController,
    in_flight: u32,
    /// The controller has learned from at least one answer.
    learned: bool,
    stats: RateStats,
}

/// The adaptive state of one SCIM target, shared by every instance of the process.
pub struct TargetRate {
    base_url: String,
    /// The cap every process on the shared database shares (`[host] server_in_flight`).
    shared_cap: crate::shared_in_flight::CapLookup,
    adaptive: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    epoch: Instant,
}

/// The longest a held request sleeps before it looks again (so a lost wake-up costs little).
const RECHECK: Duration = Duration::from_millis(250);

impl TargetRate {
    fn new(base_url: &str) -> Self {
        TargetRate {
            base_url: base_url.trim_end_matches('/').to_string(),
            shared_cap: crate::shared_in_flight::CapLookup::new(base_url),
            adaptive: std::sync::atomic::AtomicBool::new(adaptive_by_default()),
            state: Mutex::new(State {
                controller: RateController::new(RateConfig::default(), None),
                in_flight: 0,
                learned: false,
                stats: RateStats::default(),
            }),
            changed: Condvar::new(),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Requests this target allows in flight now: the adaptive concurrency.
    pub fn concurrency(&self) -> u32 {
        self.lock().controller.concurrency()
    }

    /// The pace in requests per second, once the server has refused; `None` while unpaced.
    pub fn requests_per_second(&self) -> Option<f64> {
        self.lock().controller.requests_per_second()
    }

    /// Operations one `/Bulk` may carry now (a sync hands the component no more users per
    /// call).
    pub fn bulk_size(&self) -> u32 {
        self.lock().controller.bulk_size()
    }

    /// What would be remembered now.
    pub fn setting(&self) -> RateSetting {
        self.lock().controller.setting()
    }

    /// What the target's requests met so far.
    pub fn stats(&self) -> RateStats {
        self.lock().stats
    }

    /// Starts the counts again.
    pub fn reset_stats(&self) {
        self.lock().stats = RateStats::default();
    }

    /// Turns adaptation on or off. Off, every request goes at once and every answer goes
    /// to the component as it came (what this host did before issue 31); requests are still
    /// counted.
    pub fn set_adaptive(&self, on: bool) {
        self.adaptive
            .store(on, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Starts over from `remembered` (none: cold) under these limits.
    pub fn restart(&self, config: RateConfig, remembered: Option<RateSetting>) {
        let mut state = self.lock();
        state.controller = RateController::new(config, remembered);
        state.learned = false;
        drop(state);
        self.changed.notify_all();
    }

    /// Sends `request` through `send` under the target's rate control.
    pub fn send(
        &self,
        request: HttpRequest,
        send: &mut dyn FnMut(HttpRequest) -> Result<HttpResponse, TransportError>,
    ) -> Result<HttpResponse, TransportError> {
        if !request.url.starts_with(&self.base_url) {
            return send(request);
        }
        let bulk = matches!(request.method, Method::Post)
            && request
                .url
                .split(['?', '#'])
                .next()
                .is_some_and(|p| p.trim_end_matches('/').ends_with("/Bulk"));
        let idempotent = matches!(request.method, Method::Get | Method::Put | Method::Delete);
        // Only the target's requests hold a slot: an OAuth token request (returned above)
        // goes to another server, whatever the cap.
        let shared_cap = self.shared_cap.get();
        let mut attempt = 0u32;
        loop {
            let adaptive = self.adaptive.load(std::sync::atomic::Ordering::Relaxed);
            let sent_ms = if adaptive {
                self.admit()
            } else {
                self.now_ms()
            };
            let slot = shared_cap.as_deref().map(|cap| cap.acquire());
            // The controller learns the server's latency, not the wait for a shared slot.
            let sent_ms = if slot.is_some() && adaptive {
                self.now_ms().max(sent_ms)
            } else {
                sent_ms
            };
            let result = send(request.clone());
            drop(slot);
            let now_ms = self.now_ms();
            let status = result.as_ref().ok().map(|r| r.status);
            let retry_after_s = result.as_ref().ok().and_then(|r| {
                r.headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| parse_retry_after(v, now_unix()))
            });
            let mut state = self.lock();
            state.stats.requests += 1;
            state.stats.throttled += u64::from(status == Some(429));
            state.stats.unavailable += u64::from(status == Some(503));
            if !adaptive {
                return result;
            }
            state.in_flight = state.in_flight.saturating_sub(1);
            state.learned = true;
            let verdict = state.controller.on_answer(Answer {
                sent_ms,
                now_ms,
                status,
                retry_after_s,
                bulk,
                idempotent,
                attempt,
            });
            if matches!(verdict, Verdict::RetryAt(_)) {
                state.stats.retried += 1;
            }
            drop(state);
            self.changed.notify_all();
            match verdict {
                Verdict::Deliver => return result,
                Verdict::RetryAt(at) => {
                    // The controller holds every request to the target until `Retry-After`
                    // has passed; this one waits for its own time too.
                    std::thread::sleep(Duration::from_millis(at.saturating_sub(self.now_ms())));
                    attempt += 1;
                }
            }
        }
    }

    /// Waits until the controller lets a request go, takes its place, and says when.
    fn admit(&self) -> u64 {
        let mut state = self.lock();
        loop {
            let now = self.now_ms();
            let in_flight = state.in_flight;
            let wait = match state.controller.admit(now, in_flight) {
                Admission::Go => {
                    state.in_flight += 1;
                    let in_flight = state.in_flight;
                    state.controller.on_sent(now, in_flight);
                    return now;
                }
                Admission::WaitUntil(at) => Duration::from_millis(at.saturating_sub(now)),
                Admission::WaitForAnswer => RECHECK,
            };
            state = self
                .changed
                .wait_timeout(state, wait.min(RECHECK))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The environment variable that turns adaptation off for every target of the process
/// (`off`), as [`TargetRate::set_adaptive`] does for one.
pub const RATE_CONTROL_ENV: &str = "SCIM_RATE_CONTROL";

fn adaptive_by_default() -> bool {
    std::env::var(RATE_CONTROL_ENV).map_or(true, |v| !v.eq_ignore_ascii_case("off"))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn registry() -> &'static Mutex<HashMap<String, Arc<TargetRate>>> {
    static TARGETS: OnceLock<Mutex<HashMap<String, Arc<TargetRate>>>> = OnceLock::new();
    TARGETS.get_or_init(Mutex::default)
}

/// The rate state of the SCIM target at `base_url`, made on first use (unpaced, a small
/// window that grows).
pub fn for_target(base_url: &str) -> Arc<TargetRate> {
    let key = base_url.trim_end_matches('/').to_string();
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert_with(|| Arc::new(TargetRate::new(base_url)))
        .clone()
}

/// The adaptive concurrency of the target at `base_url`, if anything was sent to it in this
/// process: for metrics and progress displays.
pub fn current_concurrency(base_url: &str) -> Option<u32> {
    registry()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(base_url.trim_end_matches('/'))
        .map(|t| t.concurrency())
}

/// The `meta` key the dialect of `base_url` is stored under (see [`crate::dialect`]).
fn dialect_key(base_url: &str) -> String {
    format!("dialect {base_url}")
}

/// Before a run against `base_url` with `workers` instances and `batch_size` users per
/// call: sets the controller's limits, and, when this process has not learned anything of
/// the target yet, starts it from the setting remembered in the stored dialect.
pub fn prepare(
    store: &Store,
    base_url: &str,
    workers: u32,
    batch_size: u32,
) -> anyhow::Result<Arc<TargetRate>> {
    let target = for_target(base_url);
    let config = RateConfig {
        max_concurrency: workers.max(1),
        max_bulk: batch_size.max(1),
        ..RateConfig::default()
    };
    let learned = target.lock().learned;
    let remembered = if learned {
        Some(target.setting())
    } else {
        store
            .meta(&dialect_key(base_url))?
            .and_then(|d| core_rate::remembered(&d))
    };
    target.restart(config, remembered);
    Ok(target)
}

/// Keeps the target's current setting in the stored dialect of `base_url`, for the next
/// run. Nothing is stored before the component's dialect is (the document is its).
pub fn remember(store: &mut Store, base_url: &str) -> anyhow::Result<()> {
    let target = for_target(base_url);
    if !target.lock().learned {
        return Ok(());
    }
    let key = dialect_key(base_url);
    if let Some(document) = core_rate::remember(store.meta(&key)?.as_deref(), target.setting()) {
        store.set_meta(&key, &document)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            headers: retry_after
                .map(|v| vec![("Retry-After".to_string(), v.to_string())])
                .unwrap_or_default(),
            body: Vec::new(),
        }
    }

    fn request(base: &str, method: Method, path: &str) -> HttpRequest {
        HttpRequest {
            method,
            url: format!("{base}{path}"),
            headers: Vec::new(),
            body: None,
            timeout_ms: 1_000,
        }
    }

    #[test]
    fn a_429_is_sent_again_after_retry_after_and_paces_the_target() {
        let base = "http://127.0.0.1:9/rate-test-429";
        let target = for_target(base);
        let mut answers = vec![
            answer(201, None),
            answer(429, Some("1")),
            // Popped first: sent again at once, so the two refusals make a run.
            answer(429, Some("0")),
        ];
        let started = Instant::now();
        let got = target
            .send(request(base, Method::Post, "/Users"), &mut |_| {
                Ok(answers.pop().expect("three answers"))
            })
            .expect("answered");
        assert_eq!(got.status, 201);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "each Retry-After honoured"
        );
        let stats = target.stats();
        assert_eq!((stats.requests, stats.throttled, stats.retried), (3, 2, 2));
        assert!(
            target.requests_per_second().is_some(),
            "paced after a run of 429s"
        );
        // The window of 2 was halved by the second 429, and grew by one with the 201 that
        // filled it.
        assert_eq!(current_concurrency(base), Some(2));
    }

    #[test]
    fn other_origins_and_non_adaptive_targets_pass_untouched() {
        let base = "http://127.0.0.1:9/rate-test-off";
        let target = for_target(base);
        let mut calls = 0;
        let got = target
            .send(
                request("http://127.0.0.1:10", Method::Post, "/token"),
                &mut |_| {
                    calls += 1;
                    Ok(answer(429, Some("1")))
                },
            )
            .expect("answered");
        assert_eq!((got.status, calls), (429, 1));
        assert_eq!(target.stats().requests, 0, "not the target's request");
        target.set_adaptive(false);
        let got = target
            .send(request(base, Method::Get, "/Users"), &mut |_| {
                calls += 1;
                Ok(answer(429, Some("1")))
            })
            .expect("answered");
        assert_eq!((got.status, calls), (429, 2), "handed back as it came");
        assert_eq!(target.stats().throttled, 1);
    }

    #[test]
    fn only_the_targets_requests_hold_a_slot_of_the_shared_cap() {
        use crate::database::DatabaseUrl;
        use crate::logging::LogSink;
        use crate::shared_in_flight::configure;
        // On SQLite the cap is the process's own: nothing is opened.
        let database = DatabaseUrl::parse("rate-cap-test.db", std::path::Path::new("/nonexistent"))
            .expect("url");
        let base = "http://127.0.0.1:9/rate-test-cap/v2";
        let target = for_target(base);
        target.set_adaptive(false);
        let mut send = |_: HttpRequest| Ok(answer(200, None));
        target
            .send(request(base, Method::Get, "/Users"), &mut send)
            .expect("answered");
        // Configured after the target was made and had sent (as `App::store` does).
        configure(base, &database, 1, LogSink::memory().0);
        let cap = crate::shared_in_flight::CapLookup::new(base)
            .get()
            .expect("configured");
        for _ in 0..3 {
            target
                .send(request(base, Method::Post, "/Bulk"), &mut send)
                .expect("answered");
        }
        target
            .send(
                request("http://127.0.0.1:10", Method::Post, "/oauth/token"),
                &mut send,
            )
            .expect("answered");
        assert_eq!(
            cap.stats().requests,
            3,
            "the target's 3 requests, not the token's"
        );
        configure(base, &database, 0, LogSink::memory().0);
        target
            .send(request(base, Method::Get, "/Users"), &mut send)
            .expect("answered");
        assert_eq!(cap.stats().requests, 3, "no cap once it is taken away");
        assert_eq!(target.stats().requests, 5);
    }
}
