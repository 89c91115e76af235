//! The log port: how both roles write log lines through their host.

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Fine detail.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Odd but not fatal.
    Warn,
    /// A failure.
    Error,
}

/// Writes log lines somewhere the host chooses. Callers never pass secrets.
pub trait LogPort {
    /// Writes one line.
    fn log(&self, level: LogLevel, message: &str);
}
