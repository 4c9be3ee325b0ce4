//! Base64 as scanners embed it in XML (Philips' barcode and associated images): decoded
//! leniently, as GLib's decoder that OpenSlide uses does: characters outside the alphabet
//! (line breaks, spaces) are skipped and `=` ends the data.

/// The bytes `text` encodes; a trailing group of fewer than 8 bits is dropped.
pub fn decode_lenient(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        bits = (bits << 6) | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode_lenient;

    #[test]
    fn decodes_with_line_breaks_and_padding() {
        assert_eq!(decode_lenient("MzMxMTk0MA=="), b"3311940");
        assert_eq!(decode_lenient("UEhM\nLUEt MDA0\r\nMg=="), b"PHL-A-0042");
        assert_eq!(decode_lenient(""), b"");
        assert_eq!(decode_lenient("QQ"), b"A");
    }
}
