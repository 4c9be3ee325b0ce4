//! CAMELYON16's submission layout: one `<slide name>.csv` per slide in one folder
//! (`OUT/camelyon16/`), as its evaluation script reads a submission, gathered from the
//! finished slides' detections.csv. A slide is named by its file's stem, as the challenge
//! names them; stems that two slides share take their output folder's name instead.

use super::summary::Summary;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The folder under `out` that holds the layout.
pub const FOLDER: &str = "camelyon16";

/// Writes `out/camelyon16/<stem>.csv` for every finished slide under `out`; returns how many.
pub fn write_challenge_folder(out: &Path) -> std::io::Result<usize> {
    // Stem → the output folders of the slides that have it.
    let mut by_stem: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(out)?.flatten() {
        let folder = entry.path();
        let summary = std::fs::read_to_string(folder.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Summary>(&t).ok());
        let Some(summary) = summary else { continue };
        if !folder.join("detections.csv").is_file() {
            continue;
        }
        let stem = Path::new(&summary.slide)
            .file_stem()
            .map_or_else(|| entry.file_name(), |s| s.to_os_string());
        by_stem
            .entry(stem.to_string_lossy().into_owned())
            .or_default()
            .push(folder);
    }
    let target = out.join(FOLDER);
    std::fs::create_dir_all(&target)?;
    let mut written = 0;
    for (stem, folders) in &by_stem {
        for folder in folders {
            let name = if folders.len() == 1 {
                stem.clone()
            } else {
                folder
                    .file_name()
                    .map_or_else(|| stem.clone(), |n| n.to_string_lossy().into_owned())
            };
            let rows = std::fs::read(folder.join("detections.csv"))?;
            crate::util::atomic::write_bytes(&target.join(format!("{name}.csv")), &rows)?;
            written += 1;
        }
    }
    Ok(written)
}
