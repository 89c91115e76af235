//! The WIT contract of a released package version is frozen: the Rust, PHP, Python and Node
//! hosts are built against it, and a component of the same version must keep fitting them.
//!
//! `wit/FROZEN` lists each frozen version with the SHA-256 of its contract, normalised so
//! that documentation and layout may still change: comments (`//` and `///`) are dropped,
//! and runs of whitespace become one space, over the `.wit` files in name order (each
//! file's name is part of the digest, so moving an item to another file counts). A change
//! to a frozen version's types, functions or worlds fails this test; it belongs in a new
//! package version (`package scim:provisioner@0.2.0;` in every file), whose digest is then
//! added to `wit/FROZEN` once hosts depend on it.

use std::path::{Path, PathBuf};

use host_example::serve::hash_to_hex;
use sha2::{Digest, Sha256};

fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("wit")
}

/// The contract without its comments and layout.
fn normalised(source: &str) -> String {
    source
        .lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The package version every `.wit` file declares, and the digest of them all.
fn contract() -> (String, String) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wit_dir())
        .expect("wit/ is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .wit files in wit/");
    let mut hasher = Sha256::new();
    let mut versions = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("a .wit file is UTF-8");
        let text = normalised(&text);
        let package = text
            .strip_prefix("package ")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("{} does not start with its package", path.display()));
        versions.push(package.to_string());
        hasher.update(path.file_name().unwrap_or_default().as_encoded_bytes());
        hasher.update(b"\n");
        hasher.update(text.as_bytes());
        hasher.update(b"\n");
    }
    versions.dedup();
    assert_eq!(
        versions.len(),
        1,
        "the .wit files declare different packages: {versions:?}"
    );
    (versions.remove(0), hash_to_hex(&hasher.finalize().into()))
}

/// `wit/FROZEN`: `package@version sha256` lines; `#` starts a comment.
fn frozen() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(wit_dir().join("FROZEN")).expect("wit/FROZEN is readable");
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [package, digest] => (package.to_string(), digest.to_string()),
                _ => panic!("wit/FROZEN: expected `package@version sha256`, got {line:?}"),
            },
        )
        .collect()
}

#[test]
fn a_frozen_package_version_keeps_its_contract() {
    let (package, digest) = contract();
    let Some((_, expected)) = frozen().into_iter().find(|(p, _)| *p == package) else {
        // A version not frozen yet: under development, free to change.
        return;
    };
    assert_eq!(
        digest, expected,
        "the WIT contract of {package} changed, but that version is frozen (wit/FROZEN): the \
         hosts are built against it. Put the change in a new package version, or undo it. \
         (Comments and layout may change freely; they are not part of the digest.)"
    );
}

#[test]
fn documentation_and_layout_are_not_part_of_the_contract() {
    let plain = "package a:b@0.1.0;\ninterface i {\n    f: func();\n}\n";
    let documented =
        "package a:b@0.1.0;\n\n/// What i is.\ninterface i {\n  // why\n  f: func(); // f\n}";
    assert_eq!(normalised(plain), normalised(documented));
    assert_ne!(
        normalised(plain),
        normalised("package a:b@0.1.0;\ninterface i {\n    f: func() -> u32;\n}\n")
    );
}
