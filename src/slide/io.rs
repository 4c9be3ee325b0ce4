//! Positional, bounds-checked reads of a slide file, shareable across threads.

use super::error::{corrupt, Result, SlideErrorKind};
use std::fs::File;
use std::path::Path;

/// A slide file opened for positional reads (no shared cursor, so threads read concurrently).
pub(crate) struct SlideFile {
    file: File,
    len: u64,
}

impl SlideFile {
    /// Opens a regular file. Anything else is refused before it is opened: opening a FIFO
    /// blocks until a writer comes, and reading a device or socket need never end.
    pub fn open(path: &Path) -> Result<Self> {
        check_regular(&std::fs::metadata(path)?)?;
        let file = File::open(path)?;
        // Checked again on what was opened, in case the path changed in between.
        let meta = file.metadata()?;
        check_regular(&meta)?;
        Ok(SlideFile {
            file,
            len: meta.len(),
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Checks that `len` bytes at `offset` lie inside the file: call before allocating for them.
    pub fn check_range(&self, offset: u64, len: u64, what: &str) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(corrupt(format!(
                "{what}: {len} bytes at offset {offset} run past the end of the file ({} bytes)",
                self.len
            ))),
        }
    }

    /// Reads exactly `len` bytes at `offset`; the range is checked against the file first.
    pub fn read_at(&self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        self.check_range(offset, len, what)?;
        let mut buf = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut buf, offset)?;
        Ok(buf)
    }

    /// Reads up to `len` bytes at `offset`, fewer where the file ends first.
    pub fn read_up_to(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return Ok(Vec::new());
        }
        self.read_at(offset, end - offset, "read")
    }
}

/// Refuses anything but a regular file, naming what it is.
fn check_regular(meta: &std::fs::Metadata) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        special_file_kind(&kind)
    };
    Err(SlideErrorKind::BadRequest(format!("is {what}, not a slide file")))
}

#[cfg(unix)]
fn special_file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}
