//! The server role: answering SCIM 2.0 requests (RFC 7643/7644) on behalf of the CMS, so
//! that an identity provider (Entra ID, Okta, authentik) can provision into it.
//!
//! [`ScimServer::handle`] takes one HTTP request ([`ServerRequest`]) and returns the
//! response ([`ServerResponse`]); it reaches the CMS's user store only through the
//! [`Directory`](crate::ports::Directory) port, which the host implements and which lives
//! with the other ports in [`crate::ports`]. [`MemoryDirectory`] is a reference
//! implementation for trying the role and for tests.
//!
//! Files: `config` (the server's settings and their checks), `cms_view` (what the
//! directory is told a written user means to the CMS), `memory` (the reference directory),
//! `handler` (routing
//! and the resource endpoints), `bulk`, `discovery`, `schemas` (the schema table that
//! drives `/Schemas`, validation and output), `validate`, `projection`
//! (`attributes`/`excludedAttributes`), `list` (paging, sorting, ListResponse), `select` (which
//! resources a directory query returns, shared with hosts),
//! `resource` (rendering `meta`), `etag`, `auth`, `routes`, `http`, `error`.

mod auth;
mod bulk;
mod cms_view;
mod config;
mod discovery;
mod error;
mod etag;
pub mod handler;
pub mod http;
mod list;
pub mod memory;
mod projection;
mod resource;
mod routes;
mod schemas;
pub mod select;
mod validate;

#[cfg(test)]
mod tests;

pub use cms_view::cms_view;
pub use config::ServerConfig;
pub use handler::ScimServer;
pub use http::{SCIM_CONTENT_TYPE, ServerRequest, ServerResponse};
pub use memory::MemoryDirectory;
