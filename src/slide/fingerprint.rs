//! A slide's identity for resuming: size, modification time and a hash of its first and last
//! MiB — cheap on a gigabyte file, and it changes when the file is replaced or rewritten.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub modified: (u64, u32),
    pub head_tail_sha256: String,
}

const MIB: u64 = 1 << 20;

pub fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
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
        head_tail_sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}
