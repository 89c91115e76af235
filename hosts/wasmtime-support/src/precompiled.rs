//! The precompiled-component cache.
//!
//! Compiling the component takes most of a second (many seconds on a loaded machine);
//! mapping a precompiled one takes a few milliseconds. [`load_component`] keeps the output of
//! `Engine::precompile_component` in a cache directory, in a file named after the `.wasm`'s
//! SHA-256 and the engine's `precompile_compatibility_hash`, so a changed component or a
//! differently configured (or upgraded) engine never picks up a stale file. Later processes
//! load it with `Component::deserialize_file`.
//!
//! - The file is written atomically (a temporary file, flushed to disk, renamed into
//!   place), so a process that starts while another writes never sees half a file.
//! - A cache file that cannot be loaded (corrupted, truncated, written by another wasmtime)
//!   is compiled again and replaced.
//! - A directory that cannot be created or written only costs a compile: the component is
//!   compiled in memory and the load still succeeds.
//!
//! Trust: a `.cwasm` is native code, which wasmtime maps and runs, so whoever can write the
//! cache directory can run code as the host. A directory this module creates is private
//! (0700); one that exists and belongs to another user, or that its group or others can
//! write, is not used at all: the component is compiled in memory, and [`CacheInfo::refused`]
//! says why, for the host to warn.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What [`load_component`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    /// The cache file: read from, or written for the next process. `None` when the
    /// directory could not be written (the next process compiles again).
    pub file: Option<PathBuf>,
    /// Whether the component came from the cache (no compile).
    pub from_cache: bool,
    /// Whether a cache file was there but could not be loaded (corrupted, truncated, or
    /// from another engine) and was compiled again.
    pub replaced_unusable: bool,
    /// How long the load took, reading the `.wasm` and any compile included.
    pub elapsed: Duration,
    /// Why the cache directory was not trusted (another user's, or writable by others), when
    /// it was not: the component was compiled in memory and nothing was read or written.
    pub refused: Option<String>,
}

impl std::fmt::Display for CacheInfo {
    /// One line for a log: what was loaded from where, and how long it took.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.elapsed.as_secs_f64() * 1000.0;
        match (&self.file, self.from_cache) {
            (Some(file), true) => {
                write!(f, "loaded precompiled {} in {ms:.1} ms", file.display())
            }
            (Some(file), false) => {
                write!(
                    f,
                    "compiled in {ms:.1} ms, precompiled into {}",
                    file.display()
                )?;
                if self.replaced_unusable {
                    f.write_str(" (the file there could not be loaded)")?;
                }
                Ok(())
            }
            (None, _) => match &self.refused {
                Some(why) => write!(f, "compiled in {ms:.1} ms, not cached ({why})"),
                None => write!(
                    f,
                    "compiled in {ms:.1} ms, not cached (the cache directory cannot be written)"
                ),
            },
        }
    }
}

/// Loads the component at `wasm_path` for `engine`: from `cache_dir` (beside the `.wasm`
/// when `None`) when it was compiled there before; otherwise compiled and written there.
/// The cache file's name starts with the `.wasm`'s stem.
pub fn load_component(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: Option<&Path>,
) -> anyhow::Result<(Component, CacheInfo)> {
    let started = Instant::now();
    let bytes = std::fs::read(wasm_path)
        .with_context(|| format!("reading the component {}", wasm_path.display()))?;
    let dir = match cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => wasm_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let stem = wasm_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("component");
    let (component, mut info) = load_bytes(engine, stem, &bytes, &dir)?;
    info.elapsed = started.elapsed();
    Ok((component, info))
}

/// [`load_component`] for a component already in memory, cached in `dir`; `name` starts
/// the cache file's name.
pub fn load_bytes(
    engine: &Engine,
    name: &str,
    wasm: &[u8],
    dir: &Path,
) -> anyhow::Result<(Component, CacheInfo)> {
    let started = Instant::now();
    if let Err(why) = trusted_dir(dir) {
        let component = Component::new(engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        let info = CacheInfo {
            file: None,
            from_cache: false,
            replaced_unusable: false,
            elapsed: started.elapsed(),
            refused: Some(why),
        };
        return Ok((component, info));
    }
    let file = dir.join(cache_file_name(engine, name, wasm));
    let mut replaced_unusable = false;
    if file.is_file() {
        // SAFETY: the file was written by `precompile_component` (below) for an engine with
        // this compatibility hash, which is in its name; wasmtime checks the ELF and its
        // engine header again and refuses a file it cannot use. The directory must be
        // trusted (module docs).
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => {
                let info = CacheInfo {
                    file: Some(file),
                    from_cache: true,
                    replaced_unusable: false,
                    elapsed: started.elapsed(),
                    refused: None,
                };
                return Ok((component, info));
            }
            // Corrupted, truncated or from another engine: compiled again and replaced.
            Err(_) => replaced_unusable = true,
        }
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)
        .context("compiling the component")?;
    let written = write_atomically(dir, &file, &compiled);
    // SAFETY: these bytes come from `precompile_component` on this engine a moment ago.
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(anyhow::Error::from)
        .context("loading the compiled component")?;
    let info = CacheInfo {
        file: written.then_some(file),
        from_cache: false,
        replaced_unusable,
        elapsed: started.elapsed(),
        refused: None,
    };
    Ok((component, info))
}

/// `{name}-{first 16 bytes of the .wasm's SHA-256}-{first 8 of the engine's}.cwasm`, in hex.
fn cache_file_name(engine: &Engine, name: &str, wasm: &[u8]) -> String {
    let wasm_key = hex(&Sha256::digest(wasm)[..16]);
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    let engine_key = hex(&hasher.0.finalize()[..8]);
    format!("{name}-{wasm_key}-{engine_key}.cwasm")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `Hasher` over SHA-256, so the engine's key does not depend on the standard library's
/// `DefaultHasher`, whose algorithm may change between Rust releases.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Whether `dir` may hold native code this process runs: it does not exist yet (it will be
/// created private), or it belongs to this process's user and neither its group nor others
/// can write it. The error says why not, in words for a log.
#[cfg(unix)]
fn trusted_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(format!(
                "the cache directory {} cannot be read: {e}",
                dir.display()
            ));
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "the cache directory {} belongs to another user (uid {}), so its files are not trusted",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the cache directory {} can be written by its group or others (mode {:o}), so its files are not trusted",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn trusted_dir(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// Writes `bytes` to `file` through a temporary file in `dir`, flushed to disk, and a
/// rename; false when anything fails (the temporary file is then removed).
fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> bool {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    if !dir.is_dir() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        if builder.create(dir).is_err() {
            return false;
        }
    }
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("cwasm"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .is_ok();
    let ok = written && std::fs::rename(&tmp, file).is_ok();
    if !ok {
        let _ = std::fs::remove_file(&tmp);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Config;

    /// The smallest component there is: the preamble of an empty one.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// The empty component with a custom section named "x": other bytes, another digest.
    fn other_component() -> Vec<u8> {
        [EMPTY_COMPONENT, b"\0\x02\x01x"].concat()
    }

    fn temp_dir(label: &str) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "scim-precompiled-{label}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_miss_compiles_and_writes_then_a_hit_loads_the_file() {
        let engine = crate::engine().unwrap();
        let dir = temp_dir("hit");
        let (_, first) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(!first.from_cache);
        assert!(!first.replaced_unusable);
        let file = first.file.clone().expect("written");
        assert!(file.is_file());
        assert!(file.starts_with(&dir));
        assert!(first.to_string().starts_with("compiled in "), "{first}");
        let (_, second) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(second.from_cache);
        assert_eq!(second.file, Some(file));
        assert!(
            second.to_string().starts_with("loaded precompiled "),
            "{second}"
        );
        // One file, no temporary file left behind.
        assert_eq!(files_in(&dir).len(), 1, "{:?}", files_in(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_digest_or_engine_configuration_is_another_key() {
        let engine = crate::engine().unwrap();
        let a = cache_file_name(&engine, "c", EMPTY_COMPONENT);
        let b = cache_file_name(&engine, "c", &other_component());
        assert_ne!(a, b);
        // The same inputs give the same name: in another process too (no random state).
        assert_eq!(a, cache_file_name(&engine, "c", EMPTY_COMPONENT));
        assert_eq!(
            a,
            cache_file_name(&crate::engine().unwrap(), "c", EMPTY_COMPONENT)
        );
        let mut config = Config::new();
        config.wasm_component_model(true);
        let no_epochs = Engine::new(&config).unwrap();
        assert_ne!(a, cache_file_name(&no_epochs, "c", EMPTY_COMPONENT));
        // `c-<32 hex>-<16 hex>.cwasm`
        let parts: Vec<&str> = a.trim_end_matches(".cwasm").split('-').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{a}");

        // And on disk: the other bytes miss, then each loads its own file.
        let dir = temp_dir("key");
        let (_, first) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        let (_, other) = load_bytes(&engine, "c", &other_component(), &dir).unwrap();
        assert!(!other.from_cache);
        assert_ne!(first.file, other.file);
        let (_, other_engine) = load_bytes(&no_epochs, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(!other_engine.from_cache);
        assert_eq!(files_in(&dir).len(), 3);
        let (_, again) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(again.from_cache);
        assert_eq!(again.file, first.file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupted_or_truncated_file_is_compiled_again_and_replaced() {
        let engine = crate::engine().unwrap();
        let dir = temp_dir("corrupt");
        let (_, first) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        let file = first.file.unwrap();
        let good = std::fs::read(&file).unwrap();
        let damaged: [Vec<u8>; 4] = [
            b"\x7fELF not really".to_vec(),
            good[..good.len() / 2].to_vec(),
            good[..good.len() - 1].to_vec(),
            Vec::new(),
        ];
        for bytes in damaged {
            std::fs::write(&file, &bytes).unwrap();
            let (_, again) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
            assert!(!again.from_cache, "{} bytes loaded", bytes.len());
            assert!(again.replaced_unusable);
            assert_eq!(again.file.as_ref(), Some(&file));
            assert!(again.to_string().contains("could not be loaded"), "{again}");
            assert_eq!(std::fs::read(&file).unwrap().len(), good.len(), "rewritten");
            let (_, then) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
            assert!(then.from_cache, "the rewritten file loads");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_not_trusted_and_a_new_one_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let engine = crate::engine().unwrap();
        // A planted file in a directory anyone can write is neither loaded nor replaced.
        let shared = temp_dir("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let planted = shared.join(cache_file_name(&engine, "c", EMPTY_COMPONENT));
        std::fs::write(&planted, b"planted").unwrap();
        let (_, info) = load_bytes(&engine, "c", EMPTY_COMPONENT, &shared).unwrap();
        assert!(!info.from_cache && info.file.is_none(), "{info:?}");
        let why = info.refused.clone().unwrap_or_default();
        assert!(why.contains("group or others"), "{why}");
        assert!(info.to_string().contains("not cached"), "{info}");
        assert_eq!(std::fs::read(&planted).unwrap(), b"planted", "left alone");
        let _ = std::fs::remove_dir_all(&shared);
        // A directory the cache creates is the user's alone.
        let fresh = temp_dir("fresh").join("cache");
        let (_, info) = load_bytes(&engine, "c", EMPTY_COMPONENT, &fresh).unwrap();
        assert!(info.file.is_some() && info.refused.is_none(), "{info:?}");
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir_all(fresh.parent().unwrap());
    }

    #[test]
    fn a_file_from_another_engine_under_this_name_is_replaced() {
        let engine = crate::engine().unwrap();
        let mut config = Config::new();
        config.wasm_component_model(true);
        let other = Engine::new(&config).unwrap();
        let dir = temp_dir("engine");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(cache_file_name(&engine, "c", EMPTY_COMPONENT));
        let foreign = other.precompile_component(EMPTY_COMPONENT).unwrap();
        std::fs::write(&file, &foreign).unwrap();
        let (_, info) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(!info.from_cache && info.replaced_unusable, "{info:?}");
        let (_, then) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(then.from_cache);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_still_loads_compiled_in_memory() {
        let engine = crate::engine().unwrap();
        // A directory under a regular file cannot be created, even by root.
        let parent = temp_dir("unwritable");
        std::fs::create_dir_all(&parent).unwrap();
        let blocker = parent.join("a-file");
        std::fs::write(&blocker, b"").unwrap();
        let dir = blocker.join("cache");
        let (_, info) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(!info.from_cache);
        assert_eq!(info.file, None);
        assert!(info.to_string().contains("not cached"), "{info}");
        let (_, again) = load_bytes(&engine, "c", EMPTY_COMPONENT, &dir).unwrap();
        assert!(!again.from_cache);
        assert_eq!(files_in(&parent), ["a-file"]);
        let _ = std::fs::remove_dir_all(&parent);
    }

    #[test]
    fn load_component_reads_the_file_and_defaults_to_beside_it() {
        let engine = crate::engine().unwrap();
        let dir = temp_dir("path");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("thing.wasm");
        std::fs::write(&path, EMPTY_COMPONENT).unwrap();
        let (_, info) = load_component(&engine, &path, None).unwrap();
        let file = info.file.unwrap();
        assert_eq!(file.parent(), Some(dir.as_path()));
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("thing-") && name.ends_with(".cwasm"),
            "{name}"
        );
        let elsewhere = dir.join("cache");
        let (_, info) = load_component(&engine, &path, Some(&elsewhere)).unwrap();
        assert!(!info.from_cache, "another directory is another cache");
        assert!(info.file.unwrap().starts_with(&elsewhere));
        let Err(missing) = load_component(&engine, &dir.join("missing.wasm"), None) else {
            panic!("a missing .wasm loaded");
        };
        let err = format!("{missing:#}");
        assert!(err.contains("missing.wasm"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn something_that_is_not_a_component_is_an_error_not_a_cache_file() {
        let engine = crate::engine().unwrap();
        let dir = temp_dir("invalid");
        let err = load_bytes(&engine, "c", b"not wasm", &dir).err();
        assert!(err.is_some());
        assert!(!dir.exists() || files_in(&dir).is_empty());
    }
}
