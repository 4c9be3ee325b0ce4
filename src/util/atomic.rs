//! Files written under a temporary name in the same directory, then renamed into place, so
//! that a file under its real name is always complete, whenever the process is killed.
//! Temporary names are hidden (`.NAME.partial-PID`), so a half-written file is never taken
//! for an output, and [`remove_partials`] can clear a dead writer's leftovers.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under by this process.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes `path` through `write` under its temporary name, synced, then renamed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = partial_path(path);
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut out)?;
        out.flush()?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// As [`write_atomically`], for a writer that takes a path (a library's save-to-file): `write`
/// creates the temporary file it is given, which is then synced and renamed.
pub fn write_atomically_to_path(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = partial_path(path);
    let result = write(&tmp)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `write_atomically` of a byte buffer.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, |out| out.write_all(bytes))
}

/// Removes temporary files that killed writers left in `dir` (call only while no other
/// process writes there, e.g. holding the folder's lock).
pub fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".partial-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes `path` (absent is fine) and syncs its directory, so that the removal is on disk
/// before whatever the caller writes next: how a finished slide's mark is withdrawn before
/// its outputs are replaced.
pub fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
