//! The `logging` capability: the guest's log lines go to stderr (or to memory, for tests),
//! filtered by level, with every configured secret scrubbed as a second line of defence,
//! and the query values of URLs (a filter's `userName eq "alice@example.com"`) redacted:
//! the log keeps the method, the path and the status, never personal data.

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
        let mut line = redact_query_values(message);
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

/// Query parameters whose values are protocol settings, never personal data.
const PLAIN_PARAMETERS: &[&str] = &[
    "startindex",
    "count",
    "sortby",
    "sortorder",
    "attributes",
    "excludedattributes",
];

/// `line` with the values in every URL's query redacted: a `filter` keeps its attributes
/// and operators but not its values (`filter=userName%20eq%20%22<redacted>%22`); paging and
/// sorting parameters stay; any other parameter's value is redacted.
pub fn redact_query_values(line: &str) -> String {
    if !line.contains('?') {
        return line.to_string();
    }
    line.split(' ')
        .map(|word| match word.split_once('?') {
            Some((before, query)) if before.contains("://") || before.starts_with('/') => {
                let (query, fragment) = match query.split_once('#') {
                    Some((q, _)) => (q, "#<redacted>"),
                    None => (query, ""),
                };
                format!("{before}?{}{fragment}", redact_query(query))
            }
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(key).to_ascii_lowercase();
            if value.is_empty() || PLAIN_PARAMETERS.contains(&name.as_str()) {
                pair.to_string()
            } else if name == "filter" {
                format!("{key}={}", redact_filter(&percent_decode(value)))
            } else {
                format!("{key}=<redacted>")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A filter with each string literal (and number) replaced; attribute names, operators
/// and `true`/`false`/`null` stay. Re-encoded so the URL stays one word.
fn redact_filter(filter: &str) -> String {
    let mut out = String::new();
    let mut chars = filter.chars().peekable();
    let mut previous_word_char = false;
    while let Some(c) = chars.next() {
        if c == '"' {
            // Skip to the closing quote, minding escapes.
            while let Some(d) = chars.next() {
                match d {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
            out.push_str("%22<redacted>%22");
            previous_word_char = false;
        } else if (c.is_ascii_digit() || c == '-') && !previous_word_char {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || matches!(d, '.' | '+' | '-' | ':'))
            {
                chars.next();
            }
            out.push_str("<redacted>");
            previous_word_char = false;
        } else {
            previous_word_char = c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '$');
            match c {
                ' ' => out.push_str("%20"),
                '&' => out.push_str("%26"),
                '#' => out.push_str("%23"),
                '%' => out.push_str("%25"),
                _ => out.push(c),
            }
        }
    }
    out
}

/// Percent-decodes leniently: `+` is a space, and a malformed escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `-v` log keeps the method, the path shape and the status, and loses the
    /// personal data a filter carries.
    #[test]
    fn redacts_filter_values_in_urls() {
        let (sink, lines) = LogSink::memory();
        sink.write(
            Level::Debug,
            "GET https://idp.example/scim/v2/Users?filter=userName%20eq%20%22alice%40example.com%22&startIndex=1&count=50 -> 200",
        );
        sink.write(
            Level::Warn,
            "GET http://127.0.0.1:8080/scim/v2/Users?filter=emails%5Btype%20eq%20%22work%22%20and%20value%20eq%20%22bob%40x.example%22%5D failed: timeout",
        );
        sink.write(
            Level::Debug,
            "GET https://idp.example/scim/v2/Users?filter=externalId+eq+%2212345%22+or+age+gt+42&email=carol@x.example -> 404",
        );
        sink.write(
            Level::Debug,
            "DELETE https://idp.example/scim/v2/Users/2819c223 -> 204",
        );
        let lines = lines.lock().unwrap().clone();
        let all = lines.join("\n");
        for personal in ["alice", "bob", "carol", "12345", "42", "x.example%22"] {
            assert!(!all.contains(personal), "{personal} leaked: {all}");
        }
        assert_eq!(
            lines[0],
            "[debug] GET https://idp.example/scim/v2/Users?filter=userName%20eq%20%22<redacted>%22&startIndex=1&count=50 -> 200"
        );
        assert!(lines[1].starts_with("[warn] GET http://127.0.0.1:8080/scim/v2/Users?filter=emails[type%20eq%20%22<redacted>%22%20and%20value%20eq%20%22<redacted>%22]"), "{}", lines[1]);
        assert!(lines[1].ends_with(" failed: timeout"));
        assert!(lines[2].contains("filter=externalId%20eq%20%22<redacted>%22%20or%20age%20gt%20<redacted>&email=<redacted> -> 404"), "{}", lines[2]);
        assert_eq!(
            lines[3],
            "[debug] DELETE https://idp.example/scim/v2/Users/2819c223 -> 204"
        );
    }
}
