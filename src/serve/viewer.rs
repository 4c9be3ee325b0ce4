//! The viewer page of one slide and its DeepZoom descriptor. The page is static HTML and
//! script (viewer.html) with the slide's name and size filled in; everything else it asks
//! the server for (the DeepZoom tiles, overlay.json).

use super::deepzoom::Pyramid;
use super::{paths, Viewed};

/// OpenSeadragon, vendored (assets/openseadragon: version, licence, checksum).
pub const OPENSEADRAGON: &str = include_str!("assets/openseadragon/openseadragon.min.js");
const PAGE: &str = include_str!("viewer.html");

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The viewer of slide `name`.
pub fn page(name: &str, v: &Viewed) -> String {
    let [w, h] = v.summary.dimensions;
    PAGE.replace("{{NAME}}", &escape(name))
        .replace("{{NAME_URL}}", &paths::encode(name))
        .replace("{{WIDTH}}", &w.to_string())
        .replace("{{HEIGHT}}", &h.to_string())
}

/// The DeepZoom descriptor (.dzi) of `pyramid`: JPEG tiles, their size and overlap.
pub fn dzi(pyramid: &Pyramid) -> String {
    let &(w, h) = pyramid.levels.last().expect("a pyramid has a level");
    let (tile, overlap) = (pyramid.tile, pyramid.overlap);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" \
         Format=\"jpeg\" Overlap=\"{overlap}\" TileSize=\"{tile}\"><Size Width=\"{w}\" Height=\"{h}\"/></Image>\n"
    )
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// The vendored OpenSeadragon is the file its checksum names.
    #[test]
    fn vendored_openseadragon_matches_its_checksum() {
        let sums = include_str!("assets/openseadragon/SHA256SUMS");
        let want = sums.split_whitespace().next().unwrap();
        let got: String = Sha256::digest(super::OPENSEADRAGON.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want);
    }
}
