//! SCIM 2.0 protocol pieces (RFC 7643/7644) that both roles share.

pub mod attr;
pub mod bulk;
pub mod discovery;
pub mod filter;
pub mod patch;
pub mod path;
pub mod response;
pub mod uri;
