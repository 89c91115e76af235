//! Everything the core needs from a host, side by side. In the component each port is backed
//! by a WIT import (see `component`); in native unit tests by fakes and
//! [`crate::server::MemoryDirectory`].
//!
//! - [`HttpPort`] (`http`): sends the client role's requests to a SCIM server.
//! - [`LogPort`] (`log`): writes log lines, for both roles.
//! - [`Directory`] (`directory`): the CMS's user store, which the server role reads and
//!   writes, with the types that cross it.
//!
//! What a port can fail with lives with the port, except [`crate::error::TransportError`],
//! which sits beside the other client-role errors.

mod directory;
mod http;
mod log;

pub use directory::{
    Directory, DirectoryError, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, Query, QueryPage,
    ResourceKind, StoredResource, USER_SCHEMA,
};
pub use http::{HttpPort, HttpRequest, HttpResponse, Method, header};
pub use log::{LogLevel, LogPort};
