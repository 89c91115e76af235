//! The connector: one SCIM server, one policy, the host's ports, and what the connector has
//! learned about the server. Holds the connection test and the read-side calls; the
//! provisioning engine builds on it.

use std::cell::RefCell;

use serde_json::Value;

use super::capabilities::ServerCapabilities;
use super::response::{self, is_success};
use crate::config::ConnectorConfig;
use crate::error::ProvisioningError;
use crate::policy::Policy;
use crate::ports::{HttpPort, HttpResponse, LogLevel, LogPort};

use super::transport::{Transport, now_unix, resource_path};

/// An open connection to one SCIM server.
pub struct Connector<H: HttpPort, L: LogPort> {
    pub(crate) config: ConnectorConfig,
    pub(crate) policy: Policy,
    pub(crate) http: H,
    pub(crate) log: L,
    /// Learned on first use; reset by every connection test.
    capabilities: RefCell<Option<ServerCapabilities>>,
    /// The remote users, listed once for a first sync; matching then looks here.
    pub(crate) index: RefCell<Option<super::index::RemoteIndex>>,
    /// Group ids by display name, learned as groups are found or created.
    pub(crate) group_ids: RefCell<std::collections::HashMap<String, String>>,
    /// Set when the server advertised `/Bulk` but refused it: writes go one by one.
    pub(crate) bulk_unusable: std::cell::Cell<bool>,
    /// What the connector learned of how the server really behaves (see `fallback`).
    pub(crate) dialect: RefCell<super::dialect::Dialect>,
    /// During `provision-batch`: the group membership changes of the batch's users, sent
    /// together in chunks at its end (see `groups`); `None` outside a batch.
    pub(crate) deferred_memberships: RefCell<Option<Vec<super::groups::MembershipChange>>>,
}

impl<H: HttpPort, L: LogPort> Connector<H, L> {
    /// Validates the policy and opens a connector. Makes no request.
    pub fn open(
        config: ConnectorConfig,
        policy_json: &str,
        http: H,
        log: L,
    ) -> Result<Self, ProvisioningError> {
        Ok(Self::new(config, Policy::parse(policy_json)?, http, log))
    }

    /// A connector for a validated configuration and policy. Makes no request.
    pub fn new(config: ConnectorConfig, policy: Policy, http: H, log: L) -> Self {
        Connector {
            config,
            policy,
            http,
            log,
            capabilities: RefCell::new(None),
            index: RefCell::new(None),
            group_ids: RefCell::new(std::collections::HashMap::new()),
            bulk_unusable: std::cell::Cell::new(false),
            dialect: RefCell::new(super::dialect::Dialect::default()),
            deferred_memberships: RefCell::new(None),
        }
    }

    /// A fresh transport for one call.
    pub(crate) fn transport(&self) -> Transport<'_, H, L> {
        Transport::new(&self.config, &self.http, &self.log)
    }

    /// The seed's "Save and Test Credentials": learns what the server supports, then proves
    /// the credentials on `/Users`, because discovery endpoints may answer without
    /// authentication (RFC 7644 §4) and so cannot prove a token.
    pub fn test_connection(&self) -> Result<ServerCapabilities, ProvisioningError> {
        let transport = self.transport();
        let caps = discover(&transport)?;
        let users = self.list_get(&transport, "/Users?startIndex=1&count=1")?;
        if !is_success(users.status) {
            return Err(response::error_from_response(&users, now_unix()));
        }
        let body = response::require_json_body(&users)?;
        if !is_list_response(&body) {
            return Err(response::unexpected(
                &users,
                "GET /Users did not return a SCIM ListResponse",
            ));
        }
        *self.capabilities.borrow_mut() = Some(caps.clone());
        let findings = self.learn_at_test(&transport, &caps)?;
        let caps = self.with_dialect(caps);
        self.log.log(
            LogLevel::Info,
            &format!(
                "connection to {} works; {}; {}",
                self.config.base_url,
                caps.summary(),
                findings.join("; ")
            ),
        );
        self.dialect.borrow_mut().findings = findings;
        Ok(caps)
    }

    /// What the server supports, discovered once per connector.
    pub fn capabilities(&self) -> Result<ServerCapabilities, ProvisioningError> {
        self.capabilities_via(&self.transport())
    }

    /// [`Connector::capabilities`], counting any discovery request on `transport`.
    pub(crate) fn capabilities_via(
        &self,
        transport: &Transport<'_, H, L>,
    ) -> Result<ServerCapabilities, ProvisioningError> {
        if let Some(caps) = self.capabilities.borrow().as_ref() {
            return Ok(self.with_dialect(caps.clone()));
        }
        let caps = discover(transport)?;
        *self.capabilities.borrow_mut() = Some(caps.clone());
        Ok(self.with_dialect(caps))
    }

    /// Reads one remote user by id: `None` on 404.
    pub fn get_user(&self, remote_id: &str) -> Result<Option<Value>, ProvisioningError> {
        let transport = self.transport();
        let resp = transport.get(&resource_path("/Users", remote_id)?)?;
        read_resource(&resp)
    }
}

/// Reads `/ServiceProviderConfig`; a server without one (404, 405, 501) gets the
/// conservative defaults rather than a failure.
fn discover<H: HttpPort, L: LogPort>(
    transport: &Transport<'_, H, L>,
) -> Result<ServerCapabilities, ProvisioningError> {
    let resp = transport.get("/ServiceProviderConfig")?;
    match resp.status {
        s if is_success(s) => {
            let body = response::require_json_body(&resp)?;
            ServerCapabilities::from_service_provider_config(&body)
                .ok_or_else(|| response::unexpected(&resp, "not a SCIM ServiceProviderConfig"))
        }
        404 | 405 | 501 => Ok(ServerCapabilities::undiscovered()),
        _ => Err(response::error_from_response(&resp, now_unix())),
    }
}

/// A ListResponse has its schema, or at least `totalResults` (some servers drop `schemas`).
pub(crate) fn is_list_response(body: &Value) -> bool {
    body.get("totalResults").is_some()
        || body
            .get("schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter().any(|u| {
                    u.as_str() == Some("urn:ietf:params:scim:api:messages:2.0:ListResponse")
                })
            })
}

/// A list answer: the error on a non-2xx status, else the ListResponse's `Resources` and
/// `totalResults` (0 when missing).
pub(crate) fn read_list(resp: &HttpResponse) -> Result<(Vec<Value>, u64), ProvisioningError> {
    if !is_success(resp.status) {
        return Err(response::error_from_response(resp, now_unix()));
    }
    let body = response::require_json_body(resp)?;
    if !is_list_response(&body) {
        return Err(response::unexpected(
            resp,
            "the answer is not a SCIM ListResponse",
        ));
    }
    let resources = super::capabilities::field(&body, "Resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = super::capabilities::field(&body, "totalResults")
        .and_then(crate::scim::lenient::lenient_u64)
        .unwrap_or(0);
    Ok((resources, total))
}

/// A resource from a GET: the body on 2xx, `None` on 404, the error otherwise.
pub(crate) fn read_resource(resp: &HttpResponse) -> Result<Option<Value>, ProvisioningError> {
    match resp.status {
        s if is_success(s) => response::require_json_body(resp).map(Some),
        404 => Ok(None),
        _ => Err(response::error_from_response(resp, now_unix())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::fake::{FakeHttp, NoLog, json_response};
    use crate::config::Auth;
    use crate::error::TransportError;
    use serde_json::json;

    fn connector(http: FakeHttp) -> Connector<FakeHttp, NoLog> {
        let config = ConnectorConfig::new(
            "https://idp.example/scim/v2/",
            Auth::Bearer("tok".into()),
            5000,
        )
        .unwrap();
        Connector::open(config, "", http, NoLog).unwrap()
    }

    fn spc() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
               "patch": {"supported": true}, "filter": {"supported": true, "maxResults": 10}})
    }

    fn list() -> Value {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
               "totalResults": 0, "Resources": []})
    }

    #[test]
    fn test_connection_discovers_then_proves_the_token() {
        let http = FakeHttp::new(vec![
            json_response(200, spc()),
            json_response(200, list()),
            json_response(404, json!({})),
            json_response(200, list()),
        ]);
        let c = connector(http);
        let caps = c.test_connection().unwrap();
        assert!(caps.discovered && caps.patch);
        assert_eq!(
            caps.filter_max_results,
            Some(10),
            "the probe matched nobody"
        );
        let sent = c.http.sent();
        assert_eq!(sent[2].url, "https://idp.example/scim/v2/Schemas");
        assert_eq!(
            sent[3].url,
            "https://idp.example/scim/v2/Users?filter=userName%20eq%20%22scim-provisioner-filter-probe-7f3e9c1d%22&startIndex=1&count=1"
        );
        assert_eq!(
            sent[0].url,
            "https://idp.example/scim/v2/ServiceProviderConfig"
        );
        assert_eq!(
            sent[1].url,
            "https://idp.example/scim/v2/Users?startIndex=1&count=1"
        );
        assert!(
            sent[1]
                .headers
                .contains(&("Authorization".into(), "Bearer tok".into()))
        );
    }

    #[test]
    fn missing_discovery_falls_back_to_users() {
        let http = FakeHttp::new(vec![
            json_response(404, json!({})),
            json_response(200, list()),
            json_response(404, json!({})),
            json_response(200, list()),
        ]);
        let caps = connector(http).test_connection().unwrap();
        assert!(!caps.discovered);
        assert!(!caps.patch);
    }

    #[test]
    fn bad_token_is_a_401_scim_error() {
        let http = FakeHttp::new(vec![
            json_response(200, spc()),
            json_response(
                401,
                json!({"schemas": [crate::scim::message::ERROR_SCHEMA], "status": "401", "detail": "nope"}),
            ),
        ]);
        match connector(http).test_connection() {
            Err(ProvisioningError::Scim(e)) => assert_eq!(e.status, 401),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn html_site_is_not_a_scim_answer() {
        let mut page = json_response(200, json!({}));
        page.headers = vec![("Content-Type".into(), "text/html".into())];
        page.body = b"<!doctype html><title>Welcome</title>".to_vec();
        match connector(FakeHttp::new(vec![page])).test_connection() {
            Err(ProvisioningError::UnexpectedResponse { status, reason, .. }) => {
                assert_eq!(status, 200);
                assert!(reason.contains("Welcome"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transport_failures_pass_through() {
        let http = FakeHttp::failing(TransportError::CannotConnect("refused".into()));
        assert!(matches!(
            connector(http).test_connection(),
            Err(ProvisioningError::Transport(TransportError::CannotConnect(
                _
            )))
        ));
    }

    #[test]
    fn get_user_encodes_the_id_and_reads_404_as_none() {
        let http = FakeHttp::new(vec![json_response(404, json!({}))]);
        let c = connector(http);
        assert_eq!(c.get_user("john smith/1").unwrap(), None);
        assert_eq!(
            c.http.sent()[0].url,
            "https://idp.example/scim/v2/Users/john%20smith%2F1"
        );
    }
}
