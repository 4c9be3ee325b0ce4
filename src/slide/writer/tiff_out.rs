//! Assembling a TIFF or BigTIFF file: pixel data appended as it is encoded, directories
//! written at the end, the header patched to point at the first one.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

/// One tag's value as written.
pub(crate) enum Value {
    Short(Vec<u16>),
    Long(Vec<u32>),
    /// LONG in classic TIFF, LONG8 in BigTIFF (offsets and byte counts).
    Offsets(Vec<u64>),
    Rational(u32, u32),
    Ascii(String),
}

impl Value {
    fn field(&self, big: bool) -> (u16, u64, Vec<u8>) {
        let mut b = Vec::new();
        match self {
            Value::Short(v) => {
                v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
                (3, v.len() as u64, b)
            }
            Value::Long(v) => {
                v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
                (4, v.len() as u64, b)
            }
            Value::Offsets(v) if big => {
                v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
                (16, v.len() as u64, b)
            }
            Value::Offsets(v) => {
                // Only reached when the file was sized to stay under 4 GiB.
                v.iter()
                    .for_each(|&x| b.extend_from_slice(&(x as u32).to_le_bytes()));
                (4, v.len() as u64, b)
            }
            Value::Rational(n, d) => {
                b.extend_from_slice(&n.to_le_bytes());
                b.extend_from_slice(&d.to_le_bytes());
                (5, 1, b)
            }
            Value::Ascii(s) => {
                b.extend_from_slice(s.as_bytes());
                b.push(0);
                (2, b.len() as u64, b)
            }
        }
    }
}

/// A directory: tags in ascending order, as TIFF requires.
pub(crate) type Directory = Vec<(u16, Value)>;

pub(crate) struct TiffOut {
    out: BufWriter<File>,
    big: bool,
    pos: u64,
}

impl TiffOut {
    pub fn create(file: File, big: bool) -> std::io::Result<TiffOut> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        if big {
            out.write_all(b"II+\0\x08\0\0\0")?;
            out.write_all(&0u64.to_le_bytes())?;
        } else {
            out.write_all(b"II*\0")?;
            out.write_all(&0u32.to_le_bytes())?;
        }
        Ok(TiffOut {
            out,
            big,
            pos: if big { 16 } else { 8 },
        })
    }

    /// Appends a chunk of pixel data; returns its offset.
    pub fn append(&mut self, data: &[u8]) -> std::io::Result<u64> {
        // Word alignment keeps readers that expect it happy.
        if self.pos % 2 == 1 {
            self.out.write_all(&[0])?;
            self.pos += 1;
        }
        let at = self.pos;
        self.out.write_all(data)?;
        self.pos += data.len() as u64;
        if !self.big && self.pos > u32::MAX as u64 {
            return Err(std::io::Error::other("classic TIFF passed 4 GiB"));
        }
        Ok(at)
    }

    /// Writes the directories (chained in the order given) and completes the file.
    pub fn finish(mut self, directories: Vec<Directory>) -> std::io::Result<File> {
        let mut first = 0u64;
        let mut previous_next_field: Option<u64> = None;
        for mut dir in directories {
            dir.sort_by_key(|(tag, _)| *tag);
            // Out-of-line values first, then the directory that points at them.
            let inline = if self.big { 8 } else { 4 };
            let mut entries = Vec::with_capacity(dir.len());
            for (tag, value) in &dir {
                let (ty, count, bytes) = value.field(self.big);
                if bytes.len() <= inline {
                    let mut v = bytes;
                    v.resize(inline, 0);
                    entries.push((*tag, ty, count, v));
                } else {
                    let at = self.append(&bytes)?;
                    let v = if self.big {
                        at.to_le_bytes().to_vec()
                    } else {
                        (at as u32).to_le_bytes().to_vec()
                    };
                    entries.push((*tag, ty, count, v));
                }
            }
            let mut ifd = Vec::new();
            if self.big {
                ifd.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            } else {
                ifd.extend_from_slice(&(entries.len() as u16).to_le_bytes());
            }
            for (tag, ty, count, v) in &entries {
                ifd.extend_from_slice(&tag.to_le_bytes());
                ifd.extend_from_slice(&ty.to_le_bytes());
                if self.big {
                    ifd.extend_from_slice(&count.to_le_bytes());
                } else {
                    ifd.extend_from_slice(&(*count as u32).to_le_bytes());
                }
                ifd.extend_from_slice(v);
            }
            let next_field_at = ifd.len() as u64;
            ifd.extend_from_slice(&vec![0u8; if self.big { 8 } else { 4 }]);
            let at = self.append(&ifd)?;
            match previous_next_field {
                None => first = at,
                Some(field) => self.patch_offset(field, at)?,
            }
            previous_next_field = Some(at + next_field_at);
        }
        self.patch_offset(if self.big { 8 } else { 4 }, first)?;
        self.out.flush()?;
        self.out.into_inner().map_err(|e| e.into_error())
    }

    fn patch_offset(&mut self, at: u64, value: u64) -> std::io::Result<()> {
        self.out.flush()?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(at))?;
        if self.big {
            file.write_all(&value.to_le_bytes())?;
        } else {
            file.write_all(&(value as u32).to_le_bytes())?;
        }
        file.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }
}
