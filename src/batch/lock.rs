//! A per-slide lock file that keeps two workers off the same slide, also across nodes on a
//! shared file system: created exclusively, holding the owner's host, boot, process id and
//! process start time, and a heartbeat time refreshed while the slide is worked on.
//!
//! Whether a lock is still held: on the same host (same name and boot), the owner's process
//! is asked after — a lock whose process is gone, or whose pid now belongs to a process that
//! started at another time, is taken over at once, and one whose process lives is respected
//! whatever its heartbeat. From another host (or where `/proc` cannot tell) the heartbeat
//! decides: older than the timeout, the owner is taken for dead. A takeover renames the old
//! file aside (only one of several workers can rename a given file) and checks that what it
//! renamed is what it judged, so a contender's fresh lock is put back, not stolen.

use crate::util::process;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    /// The owner's start time in clock ticks since boot (Linux), telling a reused pid apart.
    #[serde(default)]
    start_time: Option<u64>,
    /// The owner's boot of its host (Linux).
    #[serde(default)]
    boot_id: Option<String>,
    /// Seconds since the epoch of the owner's last heartbeat.
    heartbeat: u64,
}

impl LockInfo {
    /// This process's.
    fn mine() -> LockInfo {
        static ME: OnceLock<(String, Option<u64>, Option<String>)> = OnceLock::new();
        let (host, start_time, boot_id) = ME
            .get_or_init(|| {
                (
                    process::host(),
                    process::start_time(std::process::id()),
                    process::boot_id(),
                )
            })
            .clone();
        LockInfo {
            host,
            pid: std::process::id(),
            start_time,
            boot_id,
            heartbeat: now(),
        }
    }

    /// Whether the owner's process is alive, where this host can tell: None for another
    /// host or boot, or without `/proc`.
    fn owner_alive(&self) -> Option<bool> {
        let me = LockInfo::mine();
        if self.host != me.host || !process::proc_available() {
            return None;
        }
        match (&self.boot_id, &me.boot_id) {
            (Some(theirs), Some(ours)) if theirs == ours => {}
            (None, _) => {} // written without a boot id: the pid alone can still be gone
            _ => return None,
        }
        match (process::start_time(self.pid), self.start_time) {
            (None, _) => Some(false),
            (Some(now), Some(then)) => Some(now == then),
            (Some(_), None) => None,
        }
    }

    fn is_mine(&self) -> bool {
        let me = LockInfo::mine();
        self.host == me.host && self.pid == me.pid
    }
}

/// The outcome of [`SlideLock::acquire`].
pub enum Acquired {
    Locked(SlideLock),
    /// A live worker holds it: who ("host node7, pid 1234").
    Held(String),
}

/// A held lock; dropping it stops the heartbeat and removes the file.
pub struct SlideLock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

/// Every lock this process holds, for [`release_all`].
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn write_info(path: &Path, create_new: bool) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(create_new)
        .truncate(!create_new)
        .open(path)?;
    f.write_all(
        serde_json::to_string(&LockInfo::mine())
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// Removes the lock file at `path` if this process wrote it (a worker that took it over
/// since keeps its own).
fn remove_if_mine(path: &Path) {
    let mine = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
        .is_some_and(|i| i.is_mine());
    if mine {
        let _ = std::fs::remove_file(path);
    }
}

/// Removes every lock this process holds: for a process about to exit on a signal, whose
/// lock guards are never dropped.
pub fn release_all() {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for path in held.iter() {
        remove_if_mine(path);
    }
}

impl SlideLock {
    /// Takes the lock at `path`, or says who holds it. A lock whose owner is known dead, or
    /// (where that cannot be known) whose heartbeat is older than `stale`, is taken over.
    pub fn acquire(path: &Path, stale: Duration, beat: Duration) -> std::io::Result<Acquired> {
        match write_info(path, true) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Some(holder) = take_over(path, stale)? {
                    return Ok(Acquired::Held(holder));
                }
            }
            Err(e) => return Err(e),
        }
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.to_path_buf());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.to_path_buf(), stop.clone());
        let heartbeat = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= beat {
                    let _ = write_info(&p, false);
                    last = std::time::Instant::now();
                }
            }
        });
        Ok(Acquired::Locked(SlideLock {
            path: path.to_path_buf(),
            stop,
            heartbeat: Some(heartbeat),
        }))
    }
}

/// Takes over the existing lock at `path` if its owner is gone: None when this process now
/// holds it, else who does.
fn take_over(path: &Path, stale: Duration) -> std::io::Result<Option<String>> {
    let judged = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // Released between our attempt and this read.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let info = serde_json::from_slice::<LockInfo>(&judged).ok();
    let holder = info.as_ref().map_or_else(
        || "a worker whose lock file cannot be read".to_string(),
        |i| format!("host {}, pid {}", i.host, i.pid),
    );
    if !judged.is_empty() {
        let heartbeat = info
            .as_ref()
            .map(|i| i.heartbeat)
            .or_else(|| {
                let m = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
                Some(m.duration_since(UNIX_EPOCH).ok()?.as_secs())
            })
            .unwrap_or(0);
        let dead = match info.as_ref().and_then(LockInfo::owner_alive) {
            Some(alive) => !alive,
            None => now().saturating_sub(heartbeat) >= stale.as_secs(),
        };
        if !dead {
            return Ok(Some(holder));
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = path.with_extension(format!("stale-{}-{nanos}", std::process::id()));
        if std::fs::rename(path, &aside).is_err() {
            return Ok(Some(holder)); // another worker took it over first
        }
        // A contender may have taken it over and written its own between our read and the
        // rename: that one is put back (unless yet another lock is there by now).
        let renamed = std::fs::read(&aside).unwrap_or_default();
        if renamed != judged {
            let _ = std::fs::hard_link(&aside, path);
            let _ = std::fs::remove_file(&aside);
            return Ok(Some(holder));
        }
        let _ = std::fs::remove_file(&aside);
    }
    match write_info(path, true) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Some(holder)),
        Err(e) => Err(e),
    }
}

impl Drop for SlideLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        remove_if_mine(&self.path);
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p != &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_at(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flashslide-lock-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".lock");
        let _ = std::fs::remove_file(&path);
        path
    }

    const LONG: Duration = Duration::from_secs(600);
    const BEAT: Duration = Duration::from_secs(30);

    fn taken(path: &Path) -> bool {
        match SlideLock::acquire(path, LONG, BEAT).unwrap() {
            Acquired::Locked(lock) => {
                let info: LockInfo = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
                assert!(info.is_mine());
                drop(lock);
                assert!(!path.exists(), "released locks are removed");
                true
            }
            Acquired::Held(_) => false,
        }
    }

    /// A lock file as another owner would have written it.
    fn place(path: &Path, host: &str, pid: u32, start_time: Option<u64>, heartbeat: u64) {
        let info = LockInfo {
            host: host.into(),
            pid,
            start_time,
            boot_id: LockInfo::mine().boot_id,
            heartbeat,
        };
        std::fs::write(path, serde_json::to_string(&info).unwrap()).unwrap();
    }

    #[test]
    fn held_locks_exclude_and_release() {
        let path = lock_at("held");
        let Acquired::Locked(held) = SlideLock::acquire(&path, LONG, BEAT).unwrap() else {
            panic!("a free lock is taken");
        };
        assert!(!taken(&path), "a held lock excludes");
        drop(held);
        assert!(taken(&path));
    }

    #[test]
    fn other_hosts_go_by_their_heartbeat() {
        let path = lock_at("other-host");
        place(&path, "node7-elsewhere", 1, Some(5), now());
        assert!(!taken(&path), "a fresh heartbeat from another host is respected");
        place(&path, "node7-elsewhere", 1, Some(5), 1);
        assert!(taken(&path), "an hour-old heartbeat is a dead worker's");
    }

    #[test]
    fn on_this_host_the_owner_process_decides_at_once() {
        if !process::proc_available() {
            return;
        }
        let me = LockInfo::mine();
        let path = lock_at("same-host");
        // A pid whose process has exited (a child, waited for).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        place(&path, &me.host, dead, Some(12345), now());
        assert!(taken(&path), "a dead owner's lock, fresh heartbeat and all");
        // A live pid that started at another time: the pid was reused.
        place(&path, &me.host, me.pid, me.start_time.map(|t| t + 1), now());
        assert!(taken(&path), "a reused pid");
        // The owner alive: respected even with an old heartbeat (stopped, say, not dead).
        place(&path, &me.host, me.pid, me.start_time, 1);
        assert!(!taken(&path), "a live owner");
        std::fs::remove_file(&path).unwrap();
    }
}
