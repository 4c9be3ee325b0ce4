//! INI files as GLib's key files read them (MIRAX's Slidedat.ini): `[Group]` headers,
//! `key=value` lines, `#` comments; keys before any group, or lines that are neither, are
//! errors. Values are kept raw (no escapes decoded), as OpenSlide reads them.

use super::error::{corrupt, Result};

/// Largest key file read (OpenSlide's limit for Slidedat.ini).
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

pub(crate) struct KeyFile {
    /// Groups in file order, each with its keys in file order (a repeated key's last value
    /// wins in `get`).
    pub groups: Vec<(String, Vec<(String, String)>)>,
}

impl KeyFile {
    pub fn parse(bytes: &[u8]) -> Result<KeyFile> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if bytes.contains(&0) {
            return Err(corrupt("key file holds a NUL byte"));
        }
        let text = String::from_utf8_lossy(bytes);
        let mut groups: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (number, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line).trim_start();
            // Lines with an empty key (real Slidedat files have them) are skipped.
            if line.is_empty() || line.starts_with('#') || line.starts_with('=') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| corrupt(format!("key file line {}: unclosed group header", number + 1)))?;
                groups.push((name.to_string(), Vec::new()));
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| corrupt(format!("key file line {}: neither a group nor a key", number + 1)))?;
            let (_, keys) = groups
                .last_mut()
                .ok_or_else(|| corrupt(format!("key file line {}: a key before any group", number + 1)))?;
            keys.push((key.trim_end().to_string(), value.trim_start().to_string()));
        }
        Ok(KeyFile { groups })
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|(g, _)| g == group)
    }

    /// A key's value (the last, where a group or key repeats).
    pub fn get(&self, group: &str, key: &str) -> Option<&str> {
        self.groups
            .iter()
            .filter(|(g, _)| g == group)
            .flat_map(|(_, keys)| keys.iter())
            .rfind(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A required key.
    pub fn require(&self, group: &str, key: &str) -> Result<&str> {
        self.get(group, key)
            .ok_or_else(|| corrupt(format!("[{group}] lacks {key}")))
    }

    /// A required whole 32-bit integer (C's strtol: leading blanks and a sign, trailing
    /// blanks allowed).
    pub fn integer(&self, group: &str, key: &str) -> Result<i64> {
        let v = self.require(group, key)?;
        v.trim()
            .parse::<i32>()
            .map(i64::from)
            .map_err(|_| corrupt(format!("[{group}] {key}={v} is not an integer")))
    }

    /// A required finite number.
    pub fn number(&self, group: &str, key: &str) -> Result<f64> {
        let v = self.require(group, key)?;
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| corrupt(format!("[{group}] {key}={v} is not a number")))
    }
}

#[cfg(test)]
mod tests {
    use super::KeyFile;

    #[test]
    fn groups_keys_comments_and_empty_keys() {
        let k = KeyFile::parse(b"\xEF\xBB\xBF# c\n[GENERAL]\r\nA = 1 \n=junk\n  B=x=y\n[L]\nA=2\n").unwrap();
        assert_eq!(k.get("GENERAL", "A"), Some("1 "));
        assert_eq!(k.get("GENERAL", "B"), Some("x=y"));
        assert_eq!(k.integer("GENERAL", "A").unwrap(), 1);
        assert_eq!(k.integer("L", "A").unwrap(), 2);
        assert!(k.get("L", "B").is_none());
        assert!(KeyFile::parse(b"A=1\n").is_err());
        assert!(KeyFile::parse(b"[G]\nno equals\n").is_err());
        assert!(KeyFile::parse(b"[G\n").is_err());
    }
}
