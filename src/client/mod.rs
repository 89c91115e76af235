//! The client role: provisioning CMS users to a SCIM server.
//!
//! Files: `connector` (one server, its policy and the read-side calls), `engine` (one user
//! in line after an event), `selection` (which operation a call does), `bulk` (many users
//! at once), `groups` (CMS roles as SCIM Groups), `index` (the remote users listed once for
//! a first sync), `rate` (adaptive rate control per target, which hosts run around their
//! requests), `resource` (helpers over remote resources), and the wire: `transport`
//! (requests through the HTTP port, with `oauth2` getting the access token where the server
//! wants one), `response` (reading answers), `capabilities` (what
//! `/ServiceProviderConfig` says) and `bulk_wire` (Bulk request and response bodies).
//! `fallback` learns how a server departs from the RFCs; `verdict` holds what the engine,
//! the fallbacks, groups and bulk all conclude from answers, so none imports another for it.

pub mod bulk;
pub mod bulk_wire;
pub mod capabilities;
pub mod connector;
pub mod dialect;
pub mod engine;
pub mod fallback;
pub mod groups;
pub mod index;
pub mod oauth2;
pub mod rate;
pub mod resource;
pub mod response;
pub mod selection;
pub mod transport;
pub mod verdict;

#[cfg(test)]
pub(crate) mod fake;
