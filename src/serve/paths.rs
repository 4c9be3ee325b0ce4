//! Request paths taken apart strictly: percent-decoding that must be valid UTF-8, and no
//! segment that could leave a folder (`..`, `.`, a slash or backslash decoded from `%2F` or
//! `%5C`, NUL), so that a path names a file under OUT or nothing.

use std::path::Path;

/// The decoded segments of `path` (which must start with `/`); a trailing slash leaves an
/// empty last segment. `None` for anything unsafe or malformed.
pub fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let s = decode(raw)?;
            let unsafe_segment = s == "." || s == ".." || s.contains(['/', '\\', '\0']);
            // Empty segments only at the end (a folder's page).
            if unsafe_segment || (s.is_empty() && i != last) {
                return None;
            }
            Some(s)
        })
        .collect()
}

/// Percent-decoding; `None` for a bad escape or bytes that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A name as one path segment of a URL.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A decimal number of at most 9 digits (a tile index, a level), nothing else.
pub fn number<T: TryFrom<u64>>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    T::try_from(s.parse::<u64>().ok()?).ok()
}

/// Text safe as a header value: printable ASCII only, at most 200 characters.
pub fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .take(200)
        .collect()
}

pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "json" | "geojson" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "csv" => "text/csv; charset=utf-8",
        "md" | "txt" => "text/plain; charset=utf-8",
        "tif" | "tiff" => "image/tiff",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(segments("/").unwrap(), Vec::<String>::new());
        assert_eq!(segments("/view/a%20b/").unwrap(), ["view", "a b", ""]);
        for bad in [
            "",
            "x",
            "/..",
            "/a/../b",
            "/%2e%2e/x",
            "/a%2Fb",
            "/a%5cb",
            "/a%00",
            "/a//b",
            "/%zz",
            "/%f",
            "/%ff",
            "/./a",
        ] {
            assert!(segments(bad).is_none(), "{bad}");
        }
        assert_eq!(number::<usize>("12"), Some(12));
        for bad in ["", "-1", "+1", "1e3", "0x10", "9999999999", " 1"] {
            assert_eq!(number::<u64>(bad), None, "{bad}");
        }
        assert_eq!(header_safe("a\r\nb"), "a??b");
    }
}
