//! The shared scenario suite and the typed-error tests against host-example's library built
//! without default features. Everything is in `tests/`, behind the `scenarios` feature (run
//! with `cargo test -p scim-provisioner-library-tests --features scenarios`); this empty
//! library only gives the package a target for `cargo build --workspace --lib`.
