//! The shared scenario suite (`tests/scenarios/*.json`) through the Rust runner of
//! `tests/tests/scenarios.rs`, compiled here against host-example's library without default
//! features (no clap, indicatif, csv or toml): the library as an embedder builds it.

#[path = "../../tests/scenarios.rs"]
mod runner;
