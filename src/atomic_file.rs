//! Files written whole or not at all: checkpoints and IDX files go to a temporary file of a
//! unique name beside their path, reach the disk (fsync), and only then replace the old file
//! by a rename, itself made durable by syncing the folder. A crash or a full disk midway
//! leaves the old file whole, and two saves to one path at once (two threads, two processes)
//! each rename a complete file of their own: the last one wins, and neither is torn.

use std::io::Write;
use std::path::Path;

use crate::Result;
use crate::error::data_error;

/// Writes `bytes` to `path` atomically and durably (see the module's notes).
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| data_error(path, format!("cannot write: {e}"));
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name =
        path.file_name().ok_or_else(|| data_error(path, "cannot write: not a file name".to_string()))?;
    // Named after the file, so a leftover from a crash says whose it was.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile makes private files (0600). A new file gets what `fs::write` gives (0666 less
    // the umask, which applies at creation); a replaced one keeps its permissions exactly
    // (set on the open file, where the umask does not apply).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let temporary = builder.tempfile_in(folder).map_err(io)?;
    #[cfg(unix)]
    if let Ok(old) = std::fs::metadata(path) {
        temporary.as_file().set_permissions(old.permissions()).map_err(io)?;
    }
    let mut temporary = temporary;
    temporary.write_all(bytes).map_err(io)?;
    temporary.as_file().sync_all().map_err(io)?;
    // On failure the temporary file is removed when `persist`'s error is dropped.
    temporary.persist(path).map_err(|e| io(e.error))?;
    sync_folder(folder).map_err(io)
}

/// Makes a rename in `folder` durable. Only Unix lets a program open and fsync a folder;
/// elsewhere the rename's durability is the file system's.
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(folder)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}
