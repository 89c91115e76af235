//! SQLite's own page cache, with one wasted scan taken out of every commit that split pages.
//!
//! When SQLite rebalances a B-tree (`balance_nonroot`) and the new sibling pages are out
//! of order, it swaps their page numbers through a temporary key: the locking page, page
//! `PENDING_BYTE / page size + 1` (1,048,577 with our 1 KiB pages). The default cache
//! (`pcache1`) remembers that key as the largest it has held. At the end of the
//! transaction the pager truncates the cache to the database's size, and with the largest
//! key far past it `pcache1` scans its whole hash table (2,048 buckets and every cached
//! page) to drop pages that are not there. A POST touches seven B-trees with 1 KiB pages,
//! so a split, and that scan, came with most commits: 7.5% of `serve`'s CPU under a POST
//! load (`perf`), about 12 µs of a 130 µs request.
//!
//! This wrapper keeps the default cache and forwards every call to it. It only tracks an
//! upper bound of the keys really in the cache (keys created by a fetch or moved to by a
//! rekey; the locking page is a key in transit, counted apart), and skips a truncation
//! when no key can be at or past its limit. Every other truncation, and every other call,
//! is the default cache's own.

use rusqlite::ffi;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::OnceLock;

/// SQLite's default `PENDING_BYTE` (fixed unless SQLite is built for its own tests).
const PENDING_BYTE: u32 = 0x4000_0000;

/// The default cache's methods, read before ours replace them.
struct DefaultMethods(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are plain function pointers plus `pArg`, which SQLite's default
// cache does not use (it is null); SQLite calls them from any thread itself.
unsafe impl Send for DefaultMethods {}
// SAFETY: as above; the struct is never written after it is stored.
unsafe impl Sync for DefaultMethods {}

static DEFAULT: OnceLock<DefaultMethods> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

#[cfg(test)]
thread_local! {
    /// Truncations skipped on this thread. SQLite runs a connection's cache on the thread
    /// that uses the connection, so a test counts its own skips, not other tests'.
    static SKIPPED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// One cache: the default cache's, and what this wrapper knows of its keys.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The locking page's number for this cache's page size: the key `balance_nonroot`
    /// parks a page at while it swaps two page numbers.
    locking_page: c_uint,
    /// No key in the cache is larger than this (the locking page aside).
    max_key: c_uint,
    /// Pages parked at the locking page right now.
    parked: u32,
}

/// Opens a SQLite connection, with the wrapper installed first: every connection the host
/// opens goes through here, so none can start SQLite before the wrapper is in place.
/// A file it creates is readable by its owner only (0600, whatever the umask), and SQLite
/// gives the `-wal` and `-shm` files the database file's mode: the files hold users' data,
/// password hashes and the server token's hash.
pub(crate) fn open(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    install();
    create_private(path);
    rusqlite::Connection::open(path)
}

/// Creates `path` empty with mode 0600 if it does not exist (an empty file is a new SQLite
/// database). Any failure is left for SQLite's open to report.
fn create_private(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Installs the wrapper, once per process, before SQLite is initialised. Returns whether
/// it is in place: `false` when SQLite was initialised before (by other code in the
/// process), which leaves the default cache as it is.
fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let mut default = ffi::sqlite3_pcache_methods2 {
            iVersion: 0,
            pArg: std::ptr::null_mut(),
            xInit: None,
            xShutdown: None,
            xCreate: None,
            xCachesize: None,
            xPagecount: None,
            xFetch: None,
            xUnpin: None,
            xRekey: None,
            xTruncate: None,
            xDestroy: None,
            xShrink: None,
        };
        // SAFETY: GETPCACHE2 writes the current methods into the struct it is given.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_GETPCACHE2,
                &mut default as *mut ffi::sqlite3_pcache_methods2,
            )
        };
        let complete = default.xInit.is_some()
            && default.xCreate.is_some()
            && default.xCachesize.is_some()
            && default.xPagecount.is_some()
            && default.xFetch.is_some()
            && default.xUnpin.is_some()
            && default.xRekey.is_some()
            && default.xTruncate.is_some()
            && default.xDestroy.is_some();
        if rc != ffi::SQLITE_OK || !complete {
            return false;
        }
        let iversion = default.iVersion;
        if DEFAULT.set(DefaultMethods(default)).is_err() {
            return false;
        }
        let ours = ffi::sqlite3_pcache_methods2 {
            iVersion: iversion,
            pArg: std::ptr::null_mut(),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        };
        // SAFETY: PCACHE2 copies the struct; it fails (SQLITE_MISUSE) once SQLite has been
        // initialised, and then nothing changed.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PCACHE2,
                &ours as *const ffi::sqlite3_pcache_methods2,
            )
        };
        rc == ffi::SQLITE_OK
    })
}

fn default() -> &'static ffi::sqlite3_pcache_methods2 {
    // Our methods are only installed after DEFAULT is set, so SQLite cannot call them
    // before.
    &DEFAULT
        .get()
        .expect("the default page cache is stored before ours is installed")
        .0
}

/// # Safety
/// `p` is a pointer `create` returned and `destroy` has not freed.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: the caller's contract; SQLite uses one cache from one thread at a time.
    unsafe { &mut *(p as *mut Cache) }
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    let d = default();
    match d.xInit {
        // SAFETY: the default cache's own method, with its own argument.
        Some(f) => unsafe { f(d.pArg) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    let d = default();
    if let Some(f) = d.xShutdown {
        // SAFETY: as in `init`.
        unsafe { f(d.pArg) }
    }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(f) = default().xCreate else {
        return std::ptr::null_mut();
    };
    // SAFETY: forwarded as SQLite called it.
    let inner = unsafe { f(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let locking_page = u32::try_from(page_size)
        .ok()
        .filter(|&s| s > 0)
        .map_or(c_uint::MAX, |s| PENDING_BYTE / s + 1);
    Box::into_raw(Box::new(Cache {
        inner,
        locking_page,
        max_key: 0,
        parked: 0,
    })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    if let Some(f) = default().xCachesize {
        // SAFETY: forwarded to the cache it wraps.
        unsafe { f(c.inner, n) }
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    // SAFETY: forwarded to the cache it wraps.
    default().xPagecount.map_or(0, |f| unsafe { f(c.inner) })
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create_flag: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    let Some(f) = default().xFetch else {
        return std::ptr::null_mut();
    };
    // SAFETY: forwarded to the cache it wraps.
    let page = unsafe { f(c.inner, key, create_flag) };
    // A fetch that may create puts `key` in the cache (the pager fetches the locking page
    // only to refuse it, and then drops it at once).
    if !page.is_null() && create_flag != 0 {
        note_key(c, key);
    }
    page
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    if let Some(f) = default().xUnpin {
        // SAFETY: forwarded to the cache it wraps.
        unsafe { f(c.inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old_key: c_uint,
    new_key: c_uint,
) {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    if let Some(f) = default().xRekey {
        // SAFETY: forwarded to the cache it wraps.
        unsafe { f(c.inner, page, old_key, new_key) }
    }
    if old_key == c.locking_page {
        c.parked = c.parked.saturating_sub(1);
    }
    note_key(c, new_key);
}

fn note_key(c: &mut Cache, key: c_uint) {
    if key == c.locking_page {
        c.parked += 1;
    } else {
        c.max_key = c.max_key.max(key);
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    // Nothing at or past `limit` can be in the cache: the default cache would only scan.
    if c.parked == 0 && limit > c.max_key {
        #[cfg(test)]
        SKIPPED.set(SKIPPED.get() + 1);
        return;
    }
    if let Some(f) = default().xTruncate {
        // SAFETY: forwarded to the cache it wraps.
        unsafe { f(c.inner, limit) }
    }
    c.max_key = c.max_key.min(limit.saturating_sub(1));
    if limit <= c.locking_page {
        c.parked = 0;
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: `p` came from `create` (as a boxed `Cache`) and SQLite destroys it once.
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    if let Some(f) = default().xDestroy {
        // SAFETY: forwarded to the cache it wraps, which is not used again.
        unsafe { f(c.inner) }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: `p` came from `create`.
    let c = unsafe { cache(p) };
    if let Some(f) = default().xShrink {
        // SAFETY: forwarded to the cache it wraps.
        unsafe { f(c.inner) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, params};

    /// Random keys into 1 KiB pages split and rebalance B-trees all the time (the swaps
    /// through the locking page among them); commits, a rolled-back growth and a reopen
    /// must leave the same rows and a sound file.
    #[test]
    fn the_wrapped_cache_keeps_every_row_through_splits_and_rollbacks() {
        assert!(install(), "installed before SQLite is initialised");
        let dir = std::env::temp_dir().join(format!(
            "scim-page-cache-test-{}-{}",
            std::process::id(),
            crate::ids::new_id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.db");
        let skipped_before = SKIPPED.get();
        let mut conn = open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;
             CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX t_v ON t(v);",
        )
        .expect("schema");
        let key = |i: u64| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for i in 0..4000u64 {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", params![key(i), key(i + 7)])
                .expect("insert");
        }
        // The commits' truncations were skipped.
        assert!(SKIPPED.get() >= skipped_before + 1000);
        // A transaction that grows the file, rolled back: its pages must leave the cache.
        {
            let tx = conn.transaction().expect("begin");
            for i in 4000..8000u64 {
                tx.execute("INSERT INTO t VALUES (?1, ?2)", params![key(i), key(i + 7)])
                    .expect("insert");
            }
            tx.rollback().expect("rollback");
        }
        for i in 8000..9000u64 {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", params![key(i), key(i + 7)])
                .expect("insert");
        }
        let count = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .expect("count")
        };
        let check = |c: &Connection| -> String {
            c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("check")
        };
        assert_eq!(count(&conn), 5000);
        assert_eq!(check(&conn), "ok");
        let other = open(&path).expect("second connection");
        assert_eq!(count(&other), 5000);
        let rolled_back: i64 = other
            .query_row(
                "SELECT count(*) FROM t WHERE k = ?1",
                params![key(4500)],
                |r| r.get(0),
            )
            .expect("lookup");
        assert_eq!(rolled_back, 0);
        drop(other);
        drop(conn);
        let reopened = open(&path).expect("reopen");
        assert_eq!(count(&reopened), 5000);
        assert_eq!(check(&reopened), "ok");
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 28: a new SQLite file, and its WAL, are the owner's only, whatever the umask.
    #[cfg(unix)]
    #[test]
    fn new_files_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "scim-private-{}-{}",
            std::process::id(),
            crate::ids::new_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("new.db");
        let conn = super::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        for file in ["new.db", "new.db-wal"] {
            let mode = std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
