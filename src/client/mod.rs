//! The client role: provisioning CMS users to a SCIM server.

pub mod bulk;
pub mod connector;
pub mod dialect;
pub mod engine;
pub mod fallback;
pub mod groups;
pub mod index;
pub mod resource;
pub mod selection;
pub mod transport;

#[cfg(test)]
pub(crate) mod fake;
