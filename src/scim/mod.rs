//! SCIM 2.0 protocol pieces (RFC 7643/7644) that both roles share. What only one role needs
//! lives under `client/` or `server/`.

pub mod attr;
pub mod filter;
pub mod lenient;
pub mod message;
pub mod partial;
pub mod patch;
pub mod path;
pub mod text;
pub mod uri;
