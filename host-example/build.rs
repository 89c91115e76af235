//! Builds the scim-provisioner component for `wasm32-wasip2` into a target directory of its
//! own, as wasmtime's test-programs do, and tells the host crate where the `.wasm` is.
//!
//! Set `SCIM_PROVISIONER_WASM` to a prebuilt component to skip the build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SCIM_PROVISIONER_WASM");
    if let Ok(prebuilt) = std::env::var("SCIM_PROVISIONER_WASM") {
        println!("cargo:rustc-env=SCIM_PROVISIONER_WASM={prebuilt}");
        return;
    }
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    for watched in ["src", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A target directory of its own: the outer cargo holds the lock on the workspace's.
    let target_dir = root.join("target").join("component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "component",
            "--target",
            "wasm32-wasip2",
            "-p",
            "scim-provisioner",
            "--lib",
        ])
        .env("CARGO_TARGET_DIR", &target_dir);
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_WASM32_WASIP2_RUNNER",
    ] {
        cmd.env_remove(var);
    }
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => panic!("could not run cargo to build the component: {e}"),
    };
    if !status.success() {
        panic!(
            "building the scim-provisioner component failed; is the target installed? \
             Run `rustup target add wasm32-wasip2`."
        );
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("component")
        .join("scim_provisioner.wasm");
    println!("cargo:rustc-env=SCIM_PROVISIONER_WASM={}", wasm.display());
}
