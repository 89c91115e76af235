//! End-to-end test support: starting real third-party SCIM peers, and loading the built
//! scim-provisioner component into wasmtime through host-example.

pub mod component;
pub mod daemons;
pub mod fault_proxy;
pub mod peers;
pub mod recording_proxy;
pub mod serve_banner;
pub mod site;
