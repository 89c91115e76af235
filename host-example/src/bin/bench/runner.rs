//! The shared runner: how a figure is timed. A pure measurement is warmed up once and then
//! timed [`REPEATS`] times, and its median kept; a load phase runs its requests over
//! several client connections at once and gives its rate and 99th-percentile latency.

use std::time::Instant;

use anyhow::{Result, anyhow};

use crate::client::Client;

/// Timed repetitions per measurement; the median is reported.
pub const REPEATS: usize = 5;

/// Runs `pass` once to warm up, then `REPEATS` times; the median nanoseconds per op.
pub fn median_ns_per_op(ops: usize, mut pass: impl FnMut() -> Result<()>) -> Result<f64> {
    pass()?;
    let mut samples = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let t = Instant::now();
        pass()?;
        samples.push(t.elapsed().as_nanos() as f64 / ops as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[REPEATS / 2])
}

/// Requests per second and the 99th-percentile latency of one phase.
#[derive(Debug, Clone, Copy)]
pub struct PhaseFigure {
    /// Requests per second.
    pub per_second: f64,
    /// The 99th-percentile latency, in ms.
    pub p99_ms: f64,
}

/// Runs `requests` (by index) over `connections` clients at once, each on its own
/// connection taking every `connections`-th index; `check` sends request `i` and checks its
/// answer. Returns the rate and p99, and whatever the requests returned, in index order.
pub fn phase<T: Send>(
    token: &str,
    requests: usize,
    connections: usize,
    check: impl Fn(&Client, usize) -> Result<T> + Sync,
) -> Result<(PhaseFigure, Vec<T>)> {
    let started = Instant::now();
    let per_connection: Vec<Result<Vec<(usize, f64, T)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                let check = &check;
                scope.spawn(move || {
                    let client = Client::new(token);
                    let mut out = Vec::new();
                    for i in (c..requests).step_by(connections) {
                        let t = Instant::now();
                        let value = check(&client, i)?;
                        out.push((i, t.elapsed().as_secs_f64() * 1e3, value));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut all = Vec::with_capacity(requests);
    for r in per_connection {
        all.extend(r?);
    }
    let mut latencies: Vec<f64> = all.iter().map(|(_, ms, _)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    all.sort_by_key(|(i, _, _)| *i);
    Ok((
        PhaseFigure {
            per_second: requests as f64 / seconds,
            p99_ms: p99,
        },
        all.into_iter().map(|(_, _, v)| v).collect(),
    ))
}
