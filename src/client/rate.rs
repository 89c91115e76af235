//! Adaptive rate control per target (AIMD): how many requests a host keeps in flight to one
//! SCIM server, how fast it sends them, and how many operations it puts in one `/Bulk`.
//!
//! Every server has a limit, and most say so only by refusing: 429 (or 503) with
//! `Retry-After`, or answers that slow down. The controller decreases multiplicatively on
//! each of those signals and grows additively while the server keeps up, like TCP's
//! congestion window, so a sync settles just under the server's limit instead of hammering
//! it (a 429 storm) or crawling (a fixed, timid setting):
//!
//! - **concurrency** (a window): `+1` per window's worth of answers while the window was
//!   full; halved on a run of 429s or 503s, or rising latency;
//! - **pace** (requests per second): none until the server first refuses in a run; then the
//!   rate it was taking, times [`RateConfig::rate_decrease`], growing by
//!   [`RateConfig::rate_increase`] requests/s every second the pace held sends back. A
//!   limit counted in requests per second (a token bucket) is met by the pace: no
//!   concurrency is low enough for it when answers take milliseconds;
//! - **bulk size**: `+1` per `/Bulk` answered, halved on a run of 429s or 503s, or a 413,
//!   to a `/Bulk`;
//! - **`Retry-After`** is always honoured: a refused request is not sent again before it
//!   passes, and after a 503 with it nothing goes to the target until then.
//!
//! A limit refuses in runs; a single refusal now and then (a flaky gateway) only has its
//! request sent again: a run is at least 2 refusals in a second and 5% of its answers. A
//! signal cuts once per round: an answer to a request sent before the last cut does not
//! cut again (a burst of refusals to requests already in flight is one signal).
//!
//! Pure: the host passes the clock (milliseconds of its own monotonic clock) and each
//! answer's status and `Retry-After`; the controller says when the next request may go, and
//! whether a refused one should be sent again. Its [`RateSetting`] is what the host keeps in
//! the dialect document (see [`remember`] and [`remembered`]) so that the next session
//! starts where this one left off.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The dialect document's key for the remembered setting.
pub const DIALECT_KEY: &str = "rate";

/// How the controller adapts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// The most requests in flight at once (the host's worker count).
    pub max_concurrency: u32,
    /// The most operations in one `/Bulk` (the host's batch size).
    pub max_bulk: u32,
    /// What the pace gains, in requests per second, each second it holds sends back and
    /// the server keeps up.
    pub rate_increase: f64,
    /// What the pace is multiplied by on a refusal.
    pub rate_decrease: f64,
    /// What the concurrency window is multiplied by on a refusal or rising latency.
    pub window_decrease: f64,
    /// Latency counts as rising past this multiple of the lowest smoothed latency seen…
    pub latency_factor: f64,
    /// …and this many milliseconds above it (a few milliseconds on loopback are noise).
    pub latency_slack_ms: f64,
    /// The longest `Retry-After` a refused request is held for and sent again; a longer
    /// one is handed back to the caller (the outbox schedules it).
    pub max_retry_wait_ms: u64,
    /// How many times one request is sent again after 429/503 before the answer is handed
    /// back.
    pub max_retries: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            max_concurrency: 8,
            max_bulk: 100,
            rate_increase: 5.0,
            rate_decrease: 0.9,
            window_decrease: 0.5,
            latency_factor: 2.0,
            latency_slack_ms: 50.0,
            max_retry_wait_ms: 60_000,
            max_retries: 8,
        }
    }
}

/// What the controller learned, as the host keeps it in the dialect document: where the
/// next session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateSetting {
    /// The concurrency window.
    pub concurrency: u32,
    /// The pace in requests per second, once the server refused; none while unpaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// The `/Bulk` size, once a bulk request was refused; none while at the maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_size: Option<u32>,
}

/// What an answer says about the server's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered (any status but the ones below): the server keeps up.
    Kept,
    /// 429 Too Many Requests.
    Throttled,
    /// 503 Service Unavailable.
    Unavailable,
    /// 413 Payload Too Large (only a signal for `/Bulk`).
    TooLarge,
    /// No answer (a timeout, a refused connection).
    Lost,
}

impl Signal {
    /// The signal of an HTTP status; `None` for a transport failure.
    pub fn of(status: Option<u16>) -> Self {
        match status {
            Some(429) => Signal::Throttled,
            Some(503) => Signal::Unavailable,
            Some(413) => Signal::TooLarge,
            Some(_) => Signal::Kept,
            None => Signal::Lost,
        }
    }
}

/// Whether a request may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it.
    Go,
    /// Not before this time (a pace slot, or `Retry-After`).
    WaitUntil(u64),
    /// The window is full: wait for an answer.
    WaitForAnswer,
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the caller.
    Deliver,
    /// Send the same request again, no sooner than this time.
    RetryAt(u64),
}

/// One answer, as the controller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// When the request was sent.
    pub sent_ms: u64,
    /// When its answer came.
    pub now_ms: u64,
    /// The status; `None` when no answer came.
    pub status: Option<u16>,
    /// `Retry-After` in seconds, when the answer had one.
    pub retry_after_s: Option<u32>,
    /// The request was a `POST /Bulk`.
    pub bulk: bool,
    /// The request may be sent twice without harm (GET, PUT, DELETE): a 503 to it is sent
    /// again; a 503 to a POST or PATCH goes back to the caller, which knows how to check
    /// whether it landed. A 429 is always sent again: the server refused it unprocessed.
    pub idempotent: bool,
    /// How many times this request was sent before.
    pub attempt: u32,
}

/// The adaptive state of one target.
#[derive(Debug, Clone)]
pub struct RateController {
    config: RateConfig,
    window: f64,
    rate: Option<f64>,
    /// The pace set by the last cut: known to be one the server takes.
    good_rate: Option<f64>,
    bulk: f64,
    /// Answers to requests sent before this do not cut again.
    last_cut_ms: Option<u64>,
    /// Nothing goes before this (`Retry-After`).
    paused_until_ms: u64,
    /// The next pace slot, in fractional milliseconds.
    next_slot_ms: f64,
    /// The last time the window was full, or the pace held a request back.
    window_full_ms: Option<u64>,
    paced_ms: Option<u64>,
    /// When each request answered (not refused) in the last second was answered.
    kept: VecDeque<u64>,
    /// When each refusal (429, 503) in the last second came.
    refused: VecDeque<u64>,
    smoothed_latency_ms: Option<f64>,
    baseline_latency_ms: Option<f64>,
    cuts: u64,
}

/// The window the controller starts with when nothing was remembered: a few requests at
/// once, growing from there.
const INITIAL_WINDOW: f64 = 2.0;
/// The slowest pace: one request every two seconds.
const MIN_RATE: f64 = 0.5;
/// A recent fullness or pace hold counts for growth this long.
const RECENT_MS: u64 = 1_000;

impl RateController {
    /// A controller for one target, starting from what was remembered, if anything.
    pub fn new(config: RateConfig, remembered: Option<RateSetting>) -> Self {
        let max_window = f64::from(config.max_concurrency.max(1));
        let max_bulk = f64::from(config.max_bulk.max(1));
        let window = remembered
            .map(|r| f64::from(r.concurrency.max(1)))
            .unwrap_or(INITIAL_WINDOW)
            .min(max_window);
        RateController {
            config,
            window,
            rate: remembered
                .and_then(|r| r.requests_per_second)
                .map(|r| f64::from(r).max(MIN_RATE)),
            good_rate: None,
            bulk: remembered
                .and_then(|r| r.bulk_size)
                .map_or(max_bulk, |b| f64::from(b.max(1)).min(max_bulk)),
            last_cut_ms: None,
            paused_until_ms: 0,
            next_slot_ms: 0.0,
            window_full_ms: None,
            paced_ms: None,
            kept: VecDeque::new(),
            refused: VecDeque::new(),
            smoothed_latency_ms: None,
            baseline_latency_ms: None,
            cuts: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    /// Requests allowed in flight now.
    pub fn concurrency(&self) -> u32 {
        // Truncation is the point: a window of 2.7 admits two.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let w = self.window.floor() as u32;
        w.clamp(1, self.config.max_concurrency.max(1))
    }

    /// The pace in requests per second; `None` while unpaced.
    pub fn requests_per_second(&self) -> Option<f64> {
        self.rate
    }

    /// Operations allowed in one `/Bulk` now.
    pub fn bulk_size(&self) -> u32 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let b = self.bulk.floor() as u32;
        b.clamp(1, self.config.max_bulk.max(1))
    }

    /// How many times the controller has cut so far.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// What to remember for the next session: the window, and the pace of the last cut.
    pub fn setting(&self) -> RateSetting {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        RateSetting {
            concurrency: self.concurrency(),
            // The pace of the last cut, the last one the server is known to take; the pace
            // grown since may be past the limit.
            requests_per_second: self
                .rate
                .map(|r| self.good_rate.map_or(r, |g| g.min(r)))
                .map(|r| (r.floor() as u32).max(1)),
            bulk_size: (self.bulk_size() < self.config.max_bulk.max(1)).then(|| self.bulk_size()),
        }
    }

    /// Whether a request may go at `now_ms` with `in_flight` requests out.
    pub fn admit(&mut self, now_ms: u64, in_flight: u32) -> Admission {
        if now_ms < self.paused_until_ms {
            return Admission::WaitUntil(self.paused_until_ms);
        }
        if in_flight >= self.concurrency() {
            self.window_full_ms = Some(now_ms);
            return Admission::WaitForAnswer;
        }
        if self.rate.is_some() && (now_ms as f64) < self.next_slot_ms {
            self.paced_ms = Some(now_ms);
            // Whole milliseconds, rounded up, so the caller never wakes early.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return Admission::WaitUntil(self.next_slot_ms.ceil() as u64);
        }
        Admission::Go
    }

    /// Records that a request went at `now_ms` (after [`Admission::Go`]).
    pub fn on_sent(&mut self, now_ms: u64, in_flight_after: u32) {
        if in_flight_after >= self.concurrency() {
            self.window_full_ms = Some(now_ms);
        }
        if let Some(rate) = self.rate {
            let now = now_ms as f64;
            // A slot unused for long is not saved up: at most one slot's burst.
            let slot = self.next_slot_ms.max(now - 1000.0 / rate);
            self.next_slot_ms = slot.max(now) + 1000.0 / rate;
        }
    }

    /// Learns from an answer, and says whether the request should be sent again.
    pub fn on_answer(&mut self, answer: Answer) -> Verdict {
        let signal = Signal::of(answer.status);
        let now = answer.now_ms;
        while self
            .kept
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > RECENT_MS)
        {
            self.kept.pop_front();
        }
        while self
            .refused
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > RECENT_MS)
        {
            self.refused.pop_front();
        }
        match signal {
            Signal::Kept => {
                self.kept.push_back(now);
                let latency = now.saturating_sub(answer.sent_ms) as f64;
                if self.latency_rising(latency) {
                    self.cut(answer.sent_ms, now, false, false);
                } else {
                    self.grow(now, answer.bulk);
                }
                Verdict::Deliver
            }
            Signal::Throttled | Signal::Unavailable => {
                self.refused.push_back(now);
                // A limit refuses in runs; a refusal now and then (a flaky gateway, another
                // client's burst) is sent again without slowing everything down.
                let refused = self.refused.len();
                if refused >= 2 && refused * 20 >= self.kept.len() + refused {
                    self.cut(answer.sent_ms, now, true, answer.bulk);
                }
                let wait_ms = answer.retry_after_s.map(|s| u64::from(s) * 1000);
                if let Some(wait) = wait_ms
                    && signal == Signal::Unavailable
                {
                    // A 503 with Retry-After is the server as a whole saying "not before":
                    // honoured for the whole target. (Past the longest wait the host holds
                    // requests, each meets the server's answer itself.) A 429's Retry-After
                    // holds the refused request; the cut pace slows the rest, so that a
                    // refusal now and then does not stall every worker.
                    let hold = wait.min(self.config.max_retry_wait_ms);
                    self.paused_until_ms = self.paused_until_ms.max(now.saturating_add(hold));
                }
                let again = signal == Signal::Throttled || answer.idempotent;
                let wait = wait_ms.unwrap_or_else(|| backoff_ms(answer.attempt));
                if again
                    && answer.attempt < self.config.max_retries
                    && wait <= self.config.max_retry_wait_ms
                {
                    Verdict::RetryAt(now.saturating_add(wait).max(self.paused_until_ms))
                } else {
                    Verdict::Deliver
                }
            }
            Signal::TooLarge => {
                if answer.bulk {
                    self.bulk = (self.bulk / 2.0).max(1.0);
                }
                Verdict::Deliver
            }
            // No answer is no news of the load: the caller's retry rules apply.
            Signal::Lost => Verdict::Deliver,
        }
    }

    /// True when `latency` (of a kept answer) shows the server queueing: the smoothed
    /// latency is well above the lowest it has been.
    fn latency_rising(&mut self, latency: f64) -> bool {
        let smoothed = match self.smoothed_latency_ms {
            Some(s) => s * 0.8 + latency * 0.2,
            None => latency,
        };
        self.smoothed_latency_ms = Some(smoothed);
        let baseline = self
            .baseline_latency_ms
            .map_or(smoothed, |b| b.min(smoothed));
        self.baseline_latency_ms = Some(baseline);
        smoothed > baseline * self.config.latency_factor + self.config.latency_slack_ms
    }

    fn cut(&mut self, sent_ms: u64, now_ms: u64, refused: bool, bulk: bool) {
        if self.last_cut_ms.is_some_and(|at| sent_ms < at) {
            return;
        }
        self.last_cut_ms = Some(now_ms);
        self.cuts += 1;
        self.window = (self.window * self.config.window_decrease).max(1.0);
        if bulk {
            self.bulk = (self.bulk / 2.0).max(1.0);
        }
        if refused {
            // The pace the server was taking: what it answered in the last second, or the
            // pace itself when that was lower.
            let taken = self.kept.len() as f64;
            let base = match self.rate {
                Some(rate) if taken > 0.0 => rate.min(taken.max(rate * 0.5)),
                Some(rate) => rate,
                None => taken,
            };
            self.rate = Some((base * self.config.rate_decrease).max(MIN_RATE));
            self.good_rate = self.rate;
        } else if let Some(latency) = self.smoothed_latency_ms {
            // Forget the queueing just seen, so that one slow spell cuts once.
            self.smoothed_latency_ms = self.baseline_latency_ms.or(Some(latency));
        }
    }

    fn grow(&mut self, now_ms: u64, bulk: bool) {
        let recent = |at: Option<u64>| at.is_some_and(|t| now_ms.saturating_sub(t) <= RECENT_MS);
        let max_window = f64::from(self.config.max_concurrency.max(1));
        if recent(self.window_full_ms) {
            self.window = (self.window + 1.0 / self.window).min(max_window);
        }
        if let Some(rate) = self.rate
            && recent(self.paced_ms)
        {
            // One answer of `rate` a second: the pace gains `rate_increase` a second.
            self.rate = Some(rate + self.config.rate_increase / rate);
        }
        if bulk {
            self.bulk = (self.bulk + 1.0).min(f64::from(self.config.max_bulk.max(1)));
        }
    }
}

/// The wait before sending again a refused request that came without `Retry-After`:
/// 250 ms, doubling, at most 32 s (a gateway's passing 503 clears in well under a second;
/// the pace, cut meanwhile, keeps a real limit from being hammered).
fn backoff_ms(attempt: u32) -> u64 {
    250u64 << attempt.min(7)
}

/// The setting remembered in a dialect document, if it holds one.
pub fn remembered(document: &str) -> Option<RateSetting> {
    let value: Value = serde_json::from_str(document).ok()?;
    serde_json::from_value(value.get(DIALECT_KEY)?.clone()).ok()
}

/// `document` (a dialect document, or nothing yet) with `setting` remembered in it; a
/// document that is not a JSON object is left as it is.
pub fn remember(document: Option<&str>, setting: RateSetting) -> Option<String> {
    let mut value: Value = serde_json::from_str(document?).ok()?;
    let obj = value.as_object_mut()?;
    obj.insert(DIALECT_KEY.into(), serde_json::to_value(setting).ok()?);
    Some(value.to_string())
}

#[cfg(test)]
#[path = "tests/rate.rs"]
mod tests;
