//! A per-slide lock file that keeps two workers off the same slide, also across nodes on a
//! shared file system: created exclusively, holding the owner's host and process id and a
//! heartbeat time refreshed while the slide is worked on. A lock whose heartbeat is older
//! than the timeout belongs to a dead worker and is taken over, by renaming it aside (only
//! one of several workers can rename a given file).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    /// Seconds since the epoch of the owner's last heartbeat.
    heartbeat: u64,
}

/// A held lock; dropping it stops the heartbeat and removes the file.
pub struct SlideLock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn write_info(path: &Path, create_new: bool) -> std::io::Result<()> {
    let info = LockInfo {
        host: host(),
        pid: std::process::id(),
        heartbeat: now(),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(create_new)
        .truncate(!create_new)
        .open(path)?;
    f.write_all(serde_json::to_string(&info).unwrap_or_default().as_bytes())
}

impl SlideLock {
    /// Takes the lock at `path`, or returns None when a live worker holds it. A lock whose
    /// heartbeat is older than `stale` (or unreadable and as old) is taken over.
    pub fn acquire(path: &Path, stale: Duration, beat: Duration) -> std::io::Result<Option<SlideLock>> {
        match write_info(path, true) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let heartbeat = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
                    .map(|i| i.heartbeat)
                    .or_else(|| {
                        let m = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
                        Some(m.duration_since(UNIX_EPOCH).ok()?.as_secs())
                    })
                    .unwrap_or(0);
                if now().saturating_sub(heartbeat) < stale.as_secs() {
                    return Ok(None);
                }
                let aside = path.with_extension(format!("stale-{}-{}", std::process::id(), now()));
                if std::fs::rename(path, &aside).is_err() {
                    return Ok(None); // another worker took it over first
                }
                let _ = std::fs::remove_file(&aside);
                match write_info(path, true) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
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
        Ok(Some(SlideLock {
            path: path.to_path_buf(),
            stop,
            heartbeat: Some(heartbeat),
        }))
    }
}

impl Drop for SlideLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_locks_exclude_stale_ones_are_taken_over() {
        let dir = std::env::temp_dir().join(format!("flashslide-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("slide.lock");
        let _ = std::fs::remove_file(&path);
        let long = Duration::from_secs(600);
        let held = SlideLock::acquire(&path, long, Duration::from_secs(30)).unwrap();
        assert!(held.is_some());
        assert!(SlideLock::acquire(&path, long, Duration::from_secs(30))
            .unwrap()
            .is_none());
        drop(held);
        assert!(!path.exists(), "released locks are removed");
        // A dead worker's lock: heartbeat an hour ago.
        std::fs::write(&path, r#"{"host":"node7","pid":1,"heartbeat":1}"#).unwrap();
        let taken = SlideLock::acquire(&path, long, Duration::from_secs(30)).unwrap();
        assert!(taken.is_some());
        let info: LockInfo = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(info.pid, std::process::id());
        drop(taken);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
