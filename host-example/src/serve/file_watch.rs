//! A `serve` on a SQLite file stops when the file is replaced or removed under it.
//!
//! Its connections hold the file they opened, not its name: after a restore from a backup
//! (`mv backup.db scim.db`, or a new file under the name by any other means) they would go
//! on answering from the old file, and every write they acknowledged would land in a file
//! nobody reads any more. Reopening in place is not safe either: the old connections'
//! `-wal` and `-shm` files keep the name's WAL, whose frames belong to the old file, and
//! SQLite would apply them to the new one. So the server stops instead, with an error
//! (non-zero exit), and its supervisor starts it again on the new file. A restore done
//! right stops `serve` first (see `docs/cli.md`); this catches one that did not.
//!
//! The file is identified by its device and inode, looked at every [`EVERY`]: one `stat`
//! of a local file, nothing on the request path. Writes in the moment before it is seen
//! still go to the old file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the file is looked at.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// Which file a path names: its device and inode (on systems without them, nothing, and
/// no replacement is ever seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileIdentity(u64, u64);

impl FileIdentity {
    /// The file `path` names now.
    pub(super) fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileIdentity(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(FileIdentity(0, 0))
        }
    }
}

/// Why the server stopped on its own, once it has.
pub(super) type StopReason = Arc<std::sync::Mutex<Option<String>>>;

/// Looks at `path` every [`EVERY`] until `stop` is set. When it no longer names the file
/// `opened` (replaced, or removed), records why in `reason`, and calls `stop_server` with
/// it.
pub(super) fn watch_until(
    path: PathBuf,
    opened: FileIdentity,
    stop: &AtomicBool,
    reason: &StopReason,
    stop_server: impl FnOnce(&str),
) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(EVERY);
        let why = match FileIdentity::of(&path) {
            Ok(now) if now == opened => continue,
            Ok(_) => "was replaced by another file",
            // Gone, or not readable any more: the file served is not the one named.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "was removed",
            Err(_) => continue,
        };
        let message = format!(
            "the database file {} {why} while serve was running (restored from a backup?): \
             serve stopped, so that no write goes to the old file; start it again to serve the \
             file there now",
            path.display()
        );
        // Recorded before the server stops: `RunningServer::wait` reads it once the
        // acceptor has ended.
        *reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.clone());
        stop_server(&message);
        return;
    }
}
