//! scim-provisioner: SCIM 2.0 user provisioning, compiled to a WebAssembly component.
//!
//! The pure core lives in the modules below and never names generated WIT types; the one
//! glue module, `component`, holds `wit_bindgen::generate!`, the `Guest` implementations and
//! the conversions, and is compiled only for the component build.

#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod mapping;
pub mod policy;
pub mod ports;
pub mod scim;
pub mod server;
pub mod time;
pub mod user;

#[cfg(all(target_arch = "wasm32", not(test)))]
mod component;
