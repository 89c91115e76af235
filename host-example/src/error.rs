//! The library's typed error, and the embedding entry points that return it.
//!
//! [`Runtime::open`] and the [`Session`] methods that can fail for SCIM reasons return
//! `anyhow::Result<Result<T, ProvisioningError>>`: the outer error for the host (a trap, a
//! missing component), the inner one for what the component reports. An embedder matches one
//! [`Error`] instead: the component's [`ProvisioningError`] and the guest's limits are named
//! cases, everything else is [`Error::Other`]. Every nested result converts with
//! [`Flatten::flatten_err`], and [`Runtime::connect`] / [`Runtime::connect_server`] open
//! with it directly.

use crate::DirectoryBackend;
use crate::logging::LogSink;
use crate::runtime::{ConnectorSettings, Runtime, ServerSession, ServerSettings, Session};
use crate::types::ProvisioningError;
use crate::{DeadlineExceeded, MemoryLimitExceeded, describe_error};

/// Why a call into the library failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component refused or failed the operation: a configuration it rejects, a SCIM
    /// error from the server, a transport failure, a missing attribute. Carries the retry
    /// class; [`describe_error`] says it in words, and so does `Display`.
    #[error("{}", describe_error(.0))]
    Provisioning(ProvisioningError),
    /// The guest ran past its deadline without returning or calling the host; the session
    /// opens a fresh instance on its next call.
    #[error(transparent)]
    Deadline(DeadlineExceeded),
    /// The guest asked for more linear memory than its limit; as for a deadline, the next
    /// call runs on a fresh instance.
    #[error(transparent)]
    MemoryLimit(MemoryLimitExceeded),
    /// Anything else: the component missing or not loadable, another trap, an I/O error.
    #[error(transparent)]
    Other(anyhow::Error),
}

impl Error {
    /// The component's error, when that is what this is.
    pub fn provisioning(&self) -> Option<&ProvisioningError> {
        match self {
            Error::Provisioning(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProvisioningError> for Error {
    fn from(e: ProvisioningError) -> Self {
        Error::Provisioning(e)
    }
}

impl From<anyhow::Error> for Error {
    /// Names the guest's limits wherever they are in the chain (a trap carries them as its
    /// cause); anything else is [`Error::Other`].
    fn from(e: anyhow::Error) -> Self {
        if let Some(d) = e.chain().find_map(|c| c.downcast_ref::<DeadlineExceeded>()) {
            return Error::Deadline(DeadlineExceeded {
                deadline: d.deadline,
            });
        }
        if let Some(m) = e
            .chain()
            .find_map(|c| c.downcast_ref::<MemoryLimitExceeded>())
        {
            return Error::MemoryLimit(MemoryLimitExceeded {
                desired: m.desired,
                limit: m.limit,
            });
        }
        Error::Other(e)
    }
}

/// Turns the nested `anyhow::Result<Result<T, ProvisioningError>>` of [`Runtime::open`] and
/// the [`Session`] methods into one `Result<T, Error>`.
pub trait Flatten<T> {
    /// The host's error and the component's, as one [`Error`].
    fn flatten_err(self) -> Result<T, Error>;
}

impl<T> Flatten<T> for anyhow::Result<Result<T, ProvisioningError>> {
    fn flatten_err(self) -> Result<T, Error> {
        match self {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Error::Provisioning(e)),
            Err(e) => Err(Error::from(e)),
        }
    }
}

impl Runtime {
    /// Opens a connector (WIT `connector.open`; sends nothing), with the typed [`Error`].
    pub fn connect(&self, settings: &ConnectorSettings) -> Result<Session, Error> {
        self.open(settings).flatten_err()
    }

    /// Opens the server role over `directory`, logging to `log`, with the typed [`Error`].
    pub fn connect_server(
        &self,
        settings: &ServerSettings,
        directory: Box<dyn DirectoryBackend>,
        log: LogSink,
    ) -> Result<ServerSession, Error> {
        self.open_server(settings, directory, log).flatten_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_anywhere_in_the_chain_is_named() {
        let trap = anyhow::Error::new(DeadlineExceeded {
            deadline: std::time::Duration::from_millis(250),
        })
        .context("wasm trap: interrupt");
        match Error::from(trap) {
            Error::Deadline(d) => assert_eq!(d.deadline.as_millis(), 250),
            other => panic!("expected Deadline, got {other:?}"),
        }
    }

    #[test]
    fn the_components_error_is_the_provisioning_case() {
        let nested: anyhow::Result<Result<u32, ProvisioningError>> =
            Ok(Err(ProvisioningError::InvalidConfig("no base URL".into())));
        let e = nested.flatten_err().expect_err("an error");
        assert!(
            matches!(e.provisioning(), Some(ProvisioningError::InvalidConfig(m)) if m == "no base URL")
        );
        assert_eq!(e.to_string(), "invalid configuration: no base URL");
        let other: anyhow::Result<Result<u32, ProvisioningError>> =
            Err(anyhow::anyhow!("the component file is missing"));
        assert!(matches!(other.flatten_err(), Err(Error::Other(_))));
        let fine: anyhow::Result<Result<u32, ProvisioningError>> = Ok(Ok(7));
        assert_eq!(fine.flatten_err().expect("ok"), 7);
    }
}
