//! Which endpoint a request path names (RFC 7644 §3.2), and the methods each one allows.

use crate::ports::ResourceKind;
use crate::server::http::percent_decode;

/// An endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/ServiceProviderConfig`.
    ServiceProviderConfig,
    /// `/Schemas` or `/Schemas/<urn>`.
    Schemas(Option<String>),
    /// `/ResourceTypes` or `/ResourceTypes/<name>`.
    ResourceTypes(Option<String>),
    /// `/Users` or `/Groups`.
    Collection(ResourceKind),
    /// `/Users/<id>` or `/Groups/<id>`.
    Item(ResourceKind, String),
    /// `/.search` (no kind: every resource type) or `/Users/.search`, `/Groups/.search`.
    Search(Option<ResourceKind>),
    /// `/Bulk`.
    Bulk,
    /// `/Me`, which this server does not implement.
    Me,
}

impl Route {
    /// Finds the route of a path relative to the base URL. Empty segments (a doubled or
    /// trailing slash) are skipped, segments are percent-decoded, and endpoint names
    /// compare case-insensitively; ids do not.
    pub fn parse(path: &str) -> Option<Route> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let first = segments.next()?;
        let second = segments.next().map(|s| percent_decode(s, false));
        if segments.next().is_some() {
            return None;
        }
        let first = percent_decode(first, false);
        let is = |name: &str| first.eq_ignore_ascii_case(name);
        let kind = if is("Users") {
            Some(ResourceKind::User)
        } else if is("Groups") {
            Some(ResourceKind::Group)
        } else {
            None
        };
        if let Some(kind) = kind {
            return Some(match second {
                None => Route::Collection(kind),
                Some(s) if s == ".search" => Route::Search(Some(kind)),
                Some(id) => Route::Item(kind, id),
            });
        }
        let has_second = second.is_some();
        let route = if is("ServiceProviderConfig") || is("ServiceProviderConfigs") {
            // `ServiceProviderConfigs` is what drafts of the RFC called it; some clients
            // still ask for it.
            Route::ServiceProviderConfig
        } else if is("Schemas") {
            Route::Schemas(second)
        } else if is("ResourceTypes") {
            Route::ResourceTypes(second)
        } else if is(".search") {
            Route::Search(None)
        } else if is("Bulk") {
            Route::Bulk
        } else if is("Me") {
            Route::Me
        } else {
            return None;
        };
        match route {
            Route::Schemas(_) | Route::ResourceTypes(_) => Some(route),
            _ if !has_second => Some(route),
            _ => None,
        }
    }

    /// The methods the endpoint allows, for `Allow` on a 405.
    pub fn allowed(&self) -> &'static [&'static str] {
        match self {
            Route::ServiceProviderConfig | Route::Schemas(_) | Route::ResourceTypes(_) => &["GET"],
            Route::Collection(_) => &["GET", "POST"],
            Route::Item(..) => &["GET", "PUT", "PATCH", "DELETE"],
            Route::Search(_) | Route::Bulk => &["POST"],
            Route::Me => &[],
        }
    }

    /// True for the discovery endpoints, which answer without authentication
    /// (RFC 7644 §4).
    pub fn is_discovery(&self) -> bool {
        matches!(
            self,
            Route::ServiceProviderConfig | Route::Schemas(_) | Route::ResourceTypes(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        use ResourceKind::{Group, User};
        let cases = [
            ("/Users", Some(Route::Collection(User))),
            ("/users/", Some(Route::Collection(User))),
            ("Users", Some(Route::Collection(User))),
            ("/Groups/abc", Some(Route::Item(Group, "abc".into()))),
            ("/Users/a%20b%2Fc", Some(Route::Item(User, "a b/c".into()))),
            ("/Users/.search", Some(Route::Search(Some(User)))),
            ("/.search", Some(Route::Search(None))),
            ("/Bulk", Some(Route::Bulk)),
            ("/Me", Some(Route::Me)),
            ("/ServiceProviderConfig", Some(Route::ServiceProviderConfig)),
            ("/Schemas", Some(Route::Schemas(None))),
            (
                "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
                Some(Route::Schemas(Some(
                    "urn:ietf:params:scim:schemas:core:2.0:User".into(),
                ))),
            ),
            (
                "/ResourceTypes/User",
                Some(Route::ResourceTypes(Some("User".into()))),
            ),
            ("/Users?filter=x", Some(Route::Collection(User))),
            ("/", None),
            ("", None),
            ("/Nope", None),
            ("/Users/a/b", None),
            ("/Bulk/x", None),
            ("/ServiceProviderConfig/x", None),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path), want, "{path}");
        }
    }
}
