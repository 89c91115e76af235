//! Builds the scim-provisioner component for `wasm32-wasip2` into a target directory of its
//! own, as wasmtime's test-programs do, and tells the host crate where the `.wasm` is.
//!
//! Set `SCIM_PROVISIONER_WASM` to a prebuilt component to skip the build.
//!
//! When binaryen's `wasm-opt` is installed (or named by `SCIM_WASM_OPT`), the component's
//! main core module is run through `wasm-opt -Oz` and the component written again in place,
//! about 130 KB smaller. Without it the component is left as rustc linked it, and a cargo
//! warning says so. `SCIM_WASM_OPT=off` skips the step.

use std::path::{Path, PathBuf};
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
    // The inner cargo reads these from the environment: a build of another profile setting
    // (CARGO_PROFILE_COMPONENT_OPT_LEVEL=s, say, to compare) must rebuild the component.
    for profile_env in [
        "CARGO_PROFILE_COMPONENT_OPT_LEVEL",
        "CARGO_PROFILE_COMPONENT_LTO",
        "CARGO_PROFILE_COMPONENT_STRIP",
    ] {
        println!("cargo:rerun-if-env-changed={profile_env}");
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
    optimise(&wasm, &target_dir);
    println!("cargo:rustc-env=SCIM_PROVISIONER_WASM={}", wasm.display());
}

/// The wasm features rustc's wasm32-wasip2 target emits; binaryen must accept them all.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Runs the component's largest core module (the guest; the others are small shims)
/// through `wasm-opt -Oz` and splices it back: imports and exports keep their names, so the
/// component's wiring is unchanged. Cargo's own output in `deps/` is left alone; the
/// uplifted `.wasm` is replaced atomically, once per build of the guest (a stamp file).
fn optimise(wasm: &Path, target_dir: &Path) {
    println!("cargo:rerun-if-env-changed=SCIM_WASM_OPT");
    let tool = std::env::var("SCIM_WASM_OPT").unwrap_or_else(|_| "wasm-opt".into());
    if tool == "off" {
        return;
    }
    let source = target_dir
        .join("wasm32-wasip2")
        .join("component")
        .join("deps")
        .join("scim_provisioner.wasm");
    let source = if source.is_file() {
        source
    } else {
        wasm.to_path_buf()
    };
    let Ok(bytes) = std::fs::read(&source) else {
        return;
    };
    let stamp_path = wasm.with_extension("wasm-opt.stamp");
    let stamp_key = format!("{} {:?}", bytes.len(), meta_mtime(&source));
    if let (Ok(stamp), Ok(current)) = (
        std::fs::read_to_string(&stamp_path),
        std::fs::metadata(wasm),
    ) {
        // "<source key>\n<optimised size>": this source was optimised and is still in place.
        if stamp == format!("{stamp_key}\n{}", current.len()) {
            return;
        }
    }
    let Some((start, body, end)) = largest_core_module(&bytes) else {
        println!(
            "cargo:warning=wasm-opt skipped: no core module found in {}",
            source.display()
        );
        return;
    };
    let dir = wasm.parent().unwrap_or(Path::new("."));
    let input = dir.join(".scim_provisioner.core.wasm");
    let output = dir.join(".scim_provisioner.core.opt.wasm");
    if std::fs::write(&input, &bytes[body..end]).is_err() {
        return;
    }
    let status = Command::new(&tool)
        .arg("-Oz")
        .args(WASM_FEATURES)
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .status();
    let optimised = match status {
        Ok(s) if s.success() => std::fs::read(&output).ok(),
        Ok(s) => {
            println!("cargo:warning={tool} failed ({s}); the component is left unoptimised");
            None
        }
        Err(_) => {
            println!(
                "cargo:warning=binaryen's wasm-opt was not found: the component is left \
                 unoptimised ({} bytes; about 130 KB more than it need be). Install binaryen \
                 (`apt-get install binaryen`) or name wasm-opt with SCIM_WASM_OPT.",
                bytes.len()
            );
            None
        }
    };
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    let Some(module) = optimised else {
        return;
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..start]);
    out.push(1); // a core module section
    leb128(&mut out, module.len());
    out.extend_from_slice(&module);
    out.extend_from_slice(&bytes[end..]);
    let tmp = wasm.with_extension("wasm.tmp");
    if std::fs::write(&tmp, &out).is_ok() && std::fs::rename(&tmp, wasm).is_ok() {
        let _ = std::fs::write(&stamp_path, format!("{stamp_key}\n{}", out.len()));
    }
}

fn meta_mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The largest top-level core module section of a component: (section start, module
/// start, module end).
fn largest_core_module(bytes: &[u8]) -> Option<(usize, usize, usize)> {
    // A component's preamble: magic, version 0x0d, layer 1.
    if bytes.len() < 8 || bytes[..4] != *b"\0asm" || bytes[4..8] != [0x0d, 0, 1, 0] {
        return None;
    }
    let mut at = 8;
    let mut best: Option<(usize, usize, usize)> = None;
    while at < bytes.len() {
        let id = bytes[at];
        let (len, body) = read_leb128(bytes, at + 1)?;
        let end = body.checked_add(len).filter(|e| *e <= bytes.len())?;
        if id == 1 && best.is_none_or(|(_, b, e)| e - b < len) {
            best = Some((at, body, end));
        }
        at = end;
    }
    best
}

fn read_leb128(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
