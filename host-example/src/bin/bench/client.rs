//! The plain HTTP client every server phase measures with, and the checks of its answers.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// One plain HTTP client (ureq's default connection reuse) with the bearer token.
pub struct Client {
    agent: ureq::Agent,
    auth: String,
}

impl Client {
    pub fn new(token: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        // The host's resolver: ureq's own starts a thread per request under a timeout,
        // which cost every server measured here about a third of its rate at 1 connection.
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            host_example::http::CachingResolver::default(),
        );
        Client {
            agent,
            auth: format!("Bearer {token}"),
        }
    }

    pub fn get(&self, url: &str) -> Result<(u16, String)> {
        let mut resp = self
            .agent
            .get(url)
            .header("Authorization", &self.auth)
            .header("Accept", "application/scim+json")
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        Ok((status, body))
    }

    pub fn post(&self, url: &str, body: &str) -> Result<(u16, String)> {
        let mut resp = self
            .agent
            .post(url)
            .header("Authorization", &self.auth)
            .header("Accept", "application/scim+json")
            .header("Content-Type", "application/scim+json")
            .send(body)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string()?;
        Ok((status, body))
    }
}

/// The id of what a POST created (201).
pub fn created_id(status: u16, body: &str, what: &str) -> Result<String> {
    expect(status, 201, body, what)?
        .get("id")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| anyhow!("{what}: the created resource has no id"))
}

pub fn expect(status: u16, want: u16, body: &str, what: &str) -> Result<Value> {
    if status != want {
        let excerpt: String = body.chars().take(300).collect();
        bail!("{what}: HTTP {status}, expected {want}: {excerpt}");
    }
    serde_json::from_str(body).with_context(|| format!("{what}: the answer is not JSON"))
}
