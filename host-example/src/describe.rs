//! Words for people and for the log: a sentence for each error the component reports,
//! and the names of actions and plans. Every host (the CLI here, a PHP, Python or Node
//! host elsewhere) can show the same text.

use crate::types::{Action, PlannedAction, ProvisioningError, RetryClass};

/// A sentence for people that says what went wrong and what to check, as the seed's
/// "Save and Test Credentials" would. Never includes a secret.
pub fn describe_error(error: &ProvisioningError) -> String {
    use crate::types::TransportError as T;
    match error {
        ProvisioningError::InvalidConfig(m) => format!("invalid configuration: {m}"),
        ProvisioningError::MissingAttribute(m) => format!(
            "user {}: required attribute {} has no value; nothing was sent",
            m.user_id, m.attribute
        ),
        ProvisioningError::Transport(t) => match &t.error {
            T::Denied(m) => format!("request refused by the host: {m}"),
            T::InvalidUrl(m) => format!("invalid URL: {m}"),
            T::CannotConnect(m) if m.starts_with(OAUTH2_TOKEN_ENDPOINT) => {
                format!("cannot connect to the {m}; check the token URL")
            }
            T::CannotConnect(m) => {
                format!(
                    "cannot connect to the SCIM server ({m}); check the base URL and that the server is running"
                )
            }
            T::Tls(m) => format!("TLS failure ({m}); check the server's certificate"),
            T::Timeout => "the SCIM server did not answer in time".into(),
            T::Other(m) => format!("transport failure: {m}"),
        },
        // The component names the token endpoint first in what went wrong there.
        ProvisioningError::Scim(e)
            if e.detail
                .as_deref()
                .is_some_and(|d| d.starts_with(OAUTH2_TOKEN_ENDPOINT)) =>
        {
            format!(
                "the authorization server refused a token (HTTP {}): {}{}",
                e.status,
                e.detail.as_deref().unwrap_or_default(),
                retry_note(&e.retry)
            )
        }
        ProvisioningError::Scim(e) => {
            let mut s = match e.status {
                401 => "authentication rejected (HTTP 401): check the bearer token".to_string(),
                403 => "access forbidden (HTTP 403): the token lacks permission".to_string(),
                404 => "not found (HTTP 404): check the SCIM base URL".to_string(),
                status => format!("the SCIM server answered HTTP {status}"),
            };
            if let Some(t) = &e.scim_type {
                s.push_str(&format!(", scimType {t}"));
            }
            if let Some(d) = &e.detail {
                s.push_str(&format!(": {d}"));
            }
            s.push_str(&retry_note(&e.retry));
            s
        }
        ProvisioningError::UnexpectedResponse(u) => {
            let hint = match u.status {
                401 => " (authentication rejected: check the bearer token)",
                403 => " (forbidden: the token lacks permission)",
                404 => " (check the SCIM base URL)",
                _ => "",
            };
            format!(
                "not a SCIM answer (HTTP {}){hint}: {}{}",
                u.status,
                u.reason,
                retry_note(&u.retry)
            )
        }
        ProvisioningError::Other(m) => m.clone(),
    }
}

/// How the component's messages about the OAuth 2.0 token endpoint begin.
const OAUTH2_TOKEN_ENDPOINT: &str = "OAuth 2.0 token endpoint";

fn retry_note(retry: &RetryClass) -> String {
    match retry {
        RetryClass::Permanent => String::new(),
        RetryClass::Backoff => " (retryable)".into(),
        RetryClass::AfterSeconds(s) => format!(" (retry after {s} s)"),
    }
}

/// The action's name for people: `created`, `adopted`, `updated` …
pub fn action_label(action: Action) -> &'static str {
    match action {
        Action::Created => "created",
        Action::Adopted => "adopted (an existing remote user matched and was linked)",
        Action::Updated => "updated",
        Action::Unchanged => "unchanged (nothing to send)",
        Action::Deactivated => "deactivated",
        Action::Deleted => "deleted",
        Action::Unlinked => "unlinked",
        Action::Skipped => "skipped",
    }
}

/// The HTTP status a failure carried, for the log.
pub fn error_status(e: &ProvisioningError) -> Option<u16> {
    match e {
        ProvisioningError::Scim(s) => Some(s.status),
        ProvisioningError::UnexpectedResponse(u) => Some(u.status),
        _ => None,
    }
}

/// The action's short name for the log.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Created => "created",
        Action::Adopted => "adopted",
        Action::Updated => "updated",
        Action::Unchanged => "unchanged",
        Action::Deactivated => "deactivated",
        Action::Deleted => "deleted",
        Action::Unlinked => "unlinked",
        Action::Skipped => "skipped",
    }
}

/// The planned action's name.
pub fn planned_name(p: PlannedAction) -> &'static str {
    match p {
        PlannedAction::Create => "create",
        PlannedAction::Update => "update",
        PlannedAction::Deactivate => "deactivate",
        PlannedAction::Reactivate => "reactivate",
        PlannedAction::Delete => "delete",
        PlannedAction::Skip => "skip",
    }
}
