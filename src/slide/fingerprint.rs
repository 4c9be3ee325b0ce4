//! A slide's identity for resuming: size, modification time and a hash of its first and last
//! MiB — cheap on a gigabyte file, and it changes when the file is replaced or rewritten.
//! A DICOM slide is a series of files: its size is theirs together, its time the latest,
//! and its hash covers the series UID and each file's name, size and first and last MiB, so
//! a file added to, removed from or rewritten in the series changes it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub modified: (u64, u32),
    pub head_tail_sha256: String,
}

impl Fingerprint {
    /// As text under fixed names, for files that record which slide they were made from
    /// (features files, kept training tokens).
    pub fn as_text(&self) -> [(&'static str, String); 3] {
        [
            ("slide_size", self.size.to_string()),
            (
                "slide_modified",
                format!("{}.{:09}", self.modified.0, self.modified.1),
            ),
            ("slide_head_tail_sha256", self.head_tail_sha256.clone()),
        ]
    }
}

const MIB: u64 = 1 << 20;

pub fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    let io = std::io::Error::other;
    let mut hash = Sha256::new();
    // A slide of several files: a DICOM series, a MIRAX slide (its .mrxs, Slidedat.ini,
    // index and data files).
    let files = if let Some((uid, files)) = super::formats::series_members(path).map_err(io)? {
        hash.update(b"dicom series\0");
        hash.update(uid.as_bytes());
        files
    } else if let Some(files) = super::formats::mirax_members(path).map_err(io)? {
        hash.update(b"mirax slide\0");
        files
    } else {
        return file_fingerprint(path);
    };
    let (mut size, mut modified) = (0, (0, 0));
    for file in &files {
        let f = file_fingerprint(file)?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hash.update(format!("\0{name}\0{}\0{}", f.size, f.head_tail_sha256).as_bytes());
        size += f.size;
        modified = modified.max(f.modified);
    }
    Ok(Fingerprint {
        size,
        modified,
        head_tail_sha256: hex(&hash.finalize()),
    })
}

/// A slide's size in bytes, all its files together (a file that cannot be read counts 0):
/// what orders slides handed to several devices.
pub fn slide_bytes(path: &Path) -> u64 {
    let members = super::formats::series_members(path)
        .ok()
        .flatten()
        .map(|(_, files)| files)
        .or_else(|| super::formats::mirax_members(path).ok().flatten());
    members
        .unwrap_or_else(|| vec![path.to_path_buf()])
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    // Not blocking should the slide have become a FIFO since the walk saw a file.
    let mut f = super::discover::open_regular(path)?;
    let meta = f.metadata()?;
    let size = meta.len();
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0));
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; MIB.min(size) as usize];
    f.read_exact(&mut buf)?;
    hash.update(&buf);
    if size > MIB {
        let tail = MIB.min(size - MIB);
        f.seek(SeekFrom::Start(size - tail))?;
        let mut buf = vec![0u8; tail as usize];
        f.read_exact(&mut buf)?;
        hash.update(&buf);
    }
    Ok(Fingerprint {
        size,
        modified,
        head_tail_sha256: hex(&hash.finalize()),
    })
}
