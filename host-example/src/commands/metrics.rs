//! `--metrics-listen`: the `/metrics` listener of `serve`, `daemon` and `sync`.

use host_example::metrics::{self, MetricsServer};

/// Starts the listener when an address was given; it stops when the result is dropped.
pub fn start(listen: Option<&str>) -> anyhow::Result<Option<MetricsServer>> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let server = metrics::serve(listen)?;
    let note = if server.addr().ip().is_loopback() {
        ""
    } else {
        " (not loopback: whoever reaches this address reads the counters)"
    };
    eprintln!("metrics: {}{note}", server.url());
    Ok(Some(server))
}
