//! The `logging` capability: the guest's log lines go to stderr (or to memory, for tests),
//! filtered by level, with every configured secret scrubbed as a second line of defence.

use std::sync::{Arc, Mutex};

pub use crate::bindings::scim::provisioner::logging::Level;

/// Where guest log lines go.
#[derive(Clone)]
pub struct LogSink {
    min_level: u8,
    secrets: Vec<String>,
    memory: Option<Arc<Mutex<Vec<String>>>>,
}

fn rank(level: Level) -> u8 {
    match level {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
    }
}

fn name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl LogSink {
    /// Lines at `min` and above go to stderr.
    pub fn stderr(min: Level) -> Self {
        LogSink {
            min_level: rank(min),
            secrets: Vec::new(),
            memory: None,
        }
    }

    /// Every line is kept in memory; returns the sink and the shared buffer.
    pub fn memory() -> (Self, Arc<Mutex<Vec<String>>>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (
            LogSink {
                min_level: 0,
                secrets: Vec::new(),
                memory: Some(buffer.clone()),
            },
            buffer,
        )
    }

    /// Strings that must never appear in a log line.
    pub fn redact(mut self, secrets: impl IntoIterator<Item = String>) -> Self {
        self.secrets
            .extend(secrets.into_iter().filter(|s| s.len() >= 4));
        self
    }

    /// Writes one line: the guest's, or the host's own about the guest (a trap).
    pub fn write(&self, level: Level, message: &str) {
        if rank(level) < self.min_level {
            return;
        }
        let mut line = message.to_string();
        for secret in &self.secrets {
            line = line.replace(secret.as_str(), "<redacted>");
        }
        let line = format!("[{}] {line}", name(level));
        match &self.memory {
            Some(buffer) => {
                if let Ok(mut b) = buffer.lock() {
                    b.push(line);
                }
            }
            None => eprintln!("{line}"),
        }
    }
}
