//! The core's errors: [`ProvisioningError`], which mirrors the WIT `provisioning-error`
//! variant case for case, so the glue converts without losing anything, and never carries
//! a secret; and [`TransportError`], what the HTTP port answers when an exchange could not
//! be carried out. Both live here, beside [`RetryClass`], so the ports depend on the errors
//! and never the other way round.

use std::fmt;

/// When a failed call may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Retrying will not help until something changes.
    Permanent,
    /// Retry with exponential backoff.
    Backoff,
    /// Retry after this many seconds.
    AfterSeconds(u32),
}

/// A SCIM error answer, or an HTTP error status.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimError {
    /// The HTTP status.
    pub status: u16,
    /// The `scimType`, if any.
    pub scim_type: Option<String>,
    /// The `detail`, if any.
    pub detail: Option<String>,
    /// When to retry.
    pub retry: RetryClass,
}

/// Why an exchange could not be carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// The host refused to send it.
    Denied(String),
    /// The URL is not valid.
    InvalidUrl(String),
    /// No connection could be made.
    CannotConnect(String),
    /// TLS failed.
    Tls(String),
    /// The exchange timed out.
    Timeout,
    /// Anything else.
    Other(String),
}

impl TransportError {
    /// Whether retrying may help.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            TransportError::Denied(_) | TransportError::InvalidUrl(_) | TransportError::Tls(_) => {
                RetryClass::Permanent
            }
            TransportError::CannotConnect(_)
            | TransportError::Timeout
            | TransportError::Other(_) => RetryClass::Backoff,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Denied(m) => write!(f, "request denied by the host: {m}"),
            TransportError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            TransportError::CannotConnect(m) => write!(f, "cannot connect: {m}"),
            TransportError::Tls(m) => write!(f, "TLS failure: {m}"),
            TransportError::Timeout => f.write_str("timed out"),
            TransportError::Other(m) => f.write_str(m),
        }
    }
}

/// Why a client-role call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisioningError {
    /// The configuration is invalid; the text names the setting or rule.
    InvalidConfig(String),
    /// A required attribute had no value; nothing was sent.
    MissingAttribute {
        /// The CMS user's id.
        user_id: String,
        /// The SCIM attribute.
        attribute: String,
    },
    /// The request could not be carried out.
    Transport(TransportError),
    /// The server answered with an error.
    Scim(ScimError),
    /// The answer was not valid SCIM.
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong, with a short safe excerpt.
        reason: String,
        /// When to retry.
        retry: RetryClass,
    },
    /// Anything else.
    Other(String),
}

impl ProvisioningError {
    /// When the failed call may be retried.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ProvisioningError::InvalidConfig(_)
            | ProvisioningError::MissingAttribute { .. }
            | ProvisioningError::Other(_) => RetryClass::Permanent,
            ProvisioningError::Transport(t) => t.retry_class(),
            ProvisioningError::Scim(e) => e.retry,
            ProvisioningError::UnexpectedResponse { retry, .. } => *retry,
        }
    }
}

impl fmt::Display for ProvisioningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisioningError::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            ProvisioningError::MissingAttribute { user_id, attribute } => {
                write!(
                    f,
                    "user {user_id}: required attribute {attribute} has no value"
                )
            }
            ProvisioningError::Transport(t) => write!(f, "transport: {t}"),
            ProvisioningError::Scim(e) => {
                write!(f, "SCIM error: HTTP {}", e.status)?;
                if let Some(t) = &e.scim_type {
                    write!(f, " ({t})")?;
                }
                if let Some(d) = &e.detail {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            ProvisioningError::UnexpectedResponse { status, reason, .. } => {
                write!(f, "unexpected response (HTTP {status}): {reason}")
            }
            ProvisioningError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ProvisioningError {}

impl From<TransportError> for ProvisioningError {
    fn from(e: TransportError) -> Self {
        ProvisioningError::Transport(e)
    }
}
