//! Test doubles for the ports: an HTTP server that answers from a script and records what it
//! was sent, and a logger that keeps lines for inspection.

use std::cell::RefCell;
use std::collections::VecDeque;

use serde_json::Value;

use crate::error::TransportError;
use crate::ports::{HttpPort, HttpRequest, HttpResponse, LogLevel, LogPort};

/// Answers requests from a script, in order.
pub struct FakeHttp {
    script: RefCell<VecDeque<Result<HttpResponse, TransportError>>>,
    sent: RefCell<Vec<HttpRequest>>,
}

impl FakeHttp {
    /// A server that gives these answers, one per request.
    pub fn new(responses: Vec<HttpResponse>) -> Self {
        FakeHttp {
            script: RefCell::new(responses.into_iter().map(Ok).collect()),
            sent: RefCell::new(Vec::new()),
        }
    }

    /// A server that cannot be reached.
    pub fn failing(error: TransportError) -> Self {
        FakeHttp {
            script: RefCell::new(std::iter::repeat_n(Err(error), 16).collect()),
            sent: RefCell::new(Vec::new()),
        }
    }

    /// Adds an answer at the end of the script.
    pub fn push(&self, answer: Result<HttpResponse, TransportError>) {
        self.script.borrow_mut().push_back(answer);
    }

    /// The requests received so far.
    pub fn sent(&self) -> Vec<HttpRequest> {
        self.sent.borrow().clone()
    }

    /// `METHOD URL` of every request received so far.
    pub fn calls(&self) -> Vec<String> {
        self.sent
            .borrow()
            .iter()
            .map(|r| format!("{} {}", r.method.as_str(), r.url))
            .collect()
    }
}

impl HttpPort for FakeHttp {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let what = format!("{} {}", request.method.as_str(), request.url);
        self.sent.borrow_mut().push(request);
        self.script
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Err(TransportError::Other(format!("script exhausted at {what}"))))
    }
}

/// A JSON answer with the SCIM content type.
pub fn json_response(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("Content-Type".into(), "application/scim+json".into())],
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// An answer with no body.
pub fn empty_response(status: u16) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![],
        body: vec![],
    }
}

/// Discards log lines.
pub struct NoLog;

impl LogPort for NoLog {
    fn log(&self, _level: LogLevel, _message: &str) {}
}

/// Keeps log lines.
#[derive(Default)]
pub struct MemoryLog(pub RefCell<Vec<String>>);

impl LogPort for MemoryLog {
    fn log(&self, _level: LogLevel, message: &str) {
        self.0.borrow_mut().push(message.to_string());
    }
}
