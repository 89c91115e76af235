//! The server role's configuration: how the server presents itself and what it allows, and
//! the checks a host's settings pass before a server opens with them.

use std::fmt;

use crate::error::ProvisioningError;

/// How the server presents itself and what it allows.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The absolute SCIM base URL, such as `https://cms.example/scim/v2`, for
    /// `meta.location` and `Location`. A trailing `/` is ignored.
    pub base_url: String,
    /// The bearer token clients must present. Empty admits no one.
    pub bearer_token: String,
    /// The most resources one list or search returns (`filter.maxResults`).
    pub max_results: u32,
    /// The most operations one bulk request may hold (`bulk.maxOperations`).
    pub bulk_max_operations: u32,
    /// The largest request body accepted, in bytes (`bulk.maxPayloadSize`); larger ones
    /// get 413.
    pub bulk_max_payload: u64,
}

impl ServerConfig {
    /// A configuration with the default limits: 200 results, 100 bulk operations, 1 MiB.
    pub fn new(base_url: impl Into<String>, bearer_token: impl Into<String>) -> Self {
        ServerConfig {
            base_url: base_url.into(),
            bearer_token: bearer_token.into(),
            max_results: 200,
            bulk_max_operations: 100,
            bulk_max_payload: 1024 * 1024,
        }
    }

    /// The configuration a host asked for, checked before a server opens with it: the base
    /// URL must be an absolute http(s) URL (surrounding whitespace is dropped), the token
    /// must not be blank, since it would admit no one, and every limit must be positive.
    pub fn validated(self) -> Result<Self, ProvisioningError> {
        let base = self.base_url.trim();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ProvisioningError::InvalidConfig(format!(
                "server base URL must be an absolute http(s) URL: {base}"
            )));
        }
        if self.bearer_token.trim().is_empty() {
            return Err(ProvisioningError::InvalidConfig(
                "the server's bearer token is empty; nothing would be admitted".into(),
            ));
        }
        if self.max_results == 0 || self.bulk_max_operations == 0 || self.bulk_max_payload == 0 {
            return Err(ProvisioningError::InvalidConfig(
                "max-results, bulk-max-operations and bulk-max-payload must be positive".into(),
            ));
        }
        Ok(ServerConfig {
            base_url: base.to_string(),
            ..self
        })
    }

    /// The base URL without a trailing `/`.
    pub(super) fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

/// Redacts the token.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("base_url", &self.base_url)
            .field("bearer_token", &"<redacted>")
            .field("max_results", &self.max_results)
            .field("bulk_max_operations", &self.bulk_max_operations)
            .field("bulk_max_payload", &self.bulk_max_payload)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_config(config: ServerConfig) -> Option<String> {
        match config.validated() {
            Err(ProvisioningError::InvalidConfig(m)) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn a_sound_config_passes_with_its_base_url_trimmed() {
        let config = ServerConfig::new(" https://cms.example/scim/v2 ", "secret").validated();
        assert_eq!(
            config.map(|c| c.base_url),
            Ok("https://cms.example/scim/v2".to_string())
        );
        assert!(
            ServerConfig::new("http://localhost:8080", "t")
                .validated()
                .is_ok()
        );
    }

    #[test]
    fn base_url_must_be_absolute_http() {
        for base in [
            "cms.example/scim",
            "ftp://cms.example",
            "",
            "HTTPS://cms.example",
        ] {
            let message = invalid_config(ServerConfig::new(base, "secret"));
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains("absolute http(s) URL")),
                "{base:?}: {message:?}"
            );
        }
    }

    #[test]
    fn a_blank_token_admits_no_one_so_it_is_refused() {
        for token in ["", "  \t"] {
            let message = invalid_config(ServerConfig::new("https://cms.example", token));
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains("bearer token is empty")),
                "{token:?}: {message:?}"
            );
        }
    }

    #[test]
    fn every_limit_must_be_positive() {
        let base = ServerConfig::new("https://cms.example", "secret");
        for config in [
            ServerConfig {
                max_results: 0,
                ..base.clone()
            },
            ServerConfig {
                bulk_max_operations: 0,
                ..base.clone()
            },
            ServerConfig {
                bulk_max_payload: 0,
                ..base.clone()
            },
        ] {
            let message = invalid_config(config);
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains("must be positive")),
                "{message:?}"
            );
        }
    }

    #[test]
    fn debug_redacts_the_token() {
        let shown = format!("{:?}", ServerConfig::new("https://cms.example", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
