//! Which files are slides, what each one's output folder is called, and which shard of a
//! cluster job takes it.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A slide to analyse.
#[derive(Clone, Debug, PartialEq)]
pub struct SlideJob {
    pub path: PathBuf,
    /// Path relative to the input it was found under (the file name for a file given
    /// directly): what shards hash and output names are made from.
    pub relative: String,
    /// The output folder's name: safe on any file system, unique within the batch.
    pub name: String,
}

/// Extensions of the formats flashslide reads; such a file is a slide even when its content
/// is damaged (so that it is reported, not skipped).
const SLIDE_EXTENSIONS: &[&str] = &["svs", "ndpi", "tif", "tiff", "btf", "scn", "bif"];

/// flashslide's own images (ground-truth masks, probability maps) say so in their
/// description: inputs of a run are slides, not those.
fn is_flashslide_output(path: &Path) -> bool {
    crate::slide::Slide::open(path).is_ok_and(|s| {
        s.properties()
            .get("tiff.ImageDescription")
            .is_some_and(|d| d.starts_with("flashslide"))
    })
}

/// A slide by content (a TIFF or BigTIFF header) or by extension.
fn looks_like_slide(path: &Path) -> bool {
    let by_extension = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SLIDE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    let mut magic = [0u8; 4];
    let by_content = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && matches!(&magic, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+");
    by_extension || by_content
}

/// Every slide under `inputs` (files, and directories searched recursively), in a stable
/// order. Unreadable directories are errors; hidden files and folders, and flashslide's own
/// masks and probability maps, are skipped (a file given by name is always taken).
pub fn discover(inputs: &[PathBuf]) -> std::io::Result<Vec<SlideJob>> {
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| with_path(input, e))?;
        if meta.is_file() {
            let name = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            found.push((input.clone(), name));
            continue;
        }
        let mut stack = vec![input.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(|e| with_path(&dir, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| with_path(&dir, e))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if looks_like_slide(&path) && !is_flashslide_output(&path) {
                    let relative = path
                        .strip_prefix(input)
                        .unwrap_or(&path)
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    found.push((path, relative));
                }
            }
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    found.dedup_by(|a, b| a.0 == b.0);
    let mut used = HashSet::new();
    Ok(found
        .into_iter()
        .map(|(path, relative)| {
            let mut name = safe_name(&relative);
            if !used.insert(name.clone()) {
                name = format!("{name}-{}", &hex_hash(path.to_string_lossy().as_bytes())[..8]);
                used.insert(name.clone());
            }
            SlideJob { path, relative, name }
        })
        .collect())
}

fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The relative path without its extension, folders joined by "__", every character
/// outside [A-Za-z0-9._-] replaced by '_' (so "a/b c.svs" → "a__b_c").
pub fn safe_name(relative: &str) -> String {
    let stem = match relative.rfind('.') {
        Some(i) if i > relative.rfind('/').map_or(0, |j| j + 1) => &relative[..i],
        _ => relative,
    };
    let name: String = stem
        .split('/')
        .collect::<Vec<_>>()
        .join("__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.').to_string();
    if name.is_empty() {
        "slide".into()
    } else {
        name
    }
}

fn hex_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether shard `index` of `count` takes `job`: by a hash of its relative path, so adding
/// slides does not move the others between shards.
pub fn in_shard(job: &SlideJob, index: usize, count: usize) -> bool {
    let h = Sha256::digest(job.relative.as_bytes());
    let v = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    (v % count as u64) as usize == index
}

/// The shard from the environment of a cluster array job: SLURM (task id minus the array's
/// first id, of the array's task count), or a Kubernetes indexed job (JOB_COMPLETION_INDEX,
/// with FLASHSLIDE_SHARDS giving the count).
pub fn shard_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<(usize, usize)>, String> {
    let num = |name: &str| -> Result<Option<usize>, String> {
        var(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{name}={v} is not a whole number"))
            })
            .transpose()
    };
    if let (Some(id), Some(count)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id
            .checked_sub(min)
            .ok_or_else(|| format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"))?;
        return check_shard(index, count).map(Some);
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let count = num("FLASHSLIDE_SHARDS")?
            .ok_or("JOB_COMPLETION_INDEX is set but FLASHSLIDE_SHARDS (the number of shards) is not")?;
        return check_shard(index, count).map(Some);
    }
    Ok(None)
}

/// Parses `I/N`.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {text}: expected I/N with 0 ≤ I < N");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    check_shard(i, n).map_err(|_| bad())
}

fn check_shard(index: usize, count: usize) -> Result<(usize, usize), String> {
    if count == 0 || index >= count {
        return Err(format!(
            "shard {index} of {count} does not exist (0 ≤ index < count)"
        ));
    }
    Ok((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_keep_folders_apart() {
        assert_eq!(safe_name("a/b c.svs"), "a__b_c");
        assert_eq!(safe_name("x/slide.1.ndpi"), "x__slide.1");
        assert_eq!(safe_name(".hidden.svs"), "hidden");
        assert_eq!(safe_name("..svs"), "slide");
        assert_eq!(safe_name("weird:*?.tif"), "weird___");
        assert_ne!(safe_name("a/s.svs"), safe_name("b/s.svs"));
    }

    #[test]
    fn shards_split_every_slide_once_and_stay_put() {
        let jobs: Vec<SlideJob> = (0..200)
            .map(|i| SlideJob {
                path: format!("/d/s{i}.svs").into(),
                relative: format!("s{i}.svs"),
                name: format!("s{i}"),
            })
            .collect();
        for count in [1, 3, 7] {
            let mut taken = 0;
            for index in 0..count {
                let n = jobs.iter().filter(|j| in_shard(j, index, count)).count();
                assert!(count == 1 || n < jobs.len(), "one shard took everything");
                taken += n;
            }
            assert_eq!(taken, jobs.len());
        }
        // Adding slides does not move the first 200 between shards.
        let before: Vec<bool> = jobs.iter().map(|j| in_shard(j, 1, 3)).collect();
        let after: Vec<bool> = jobs.iter().map(|j| in_shard(j, 1, 3)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn shard_from_slurm_or_kubernetes_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        assert_eq!(shard_from_env(env(&[])).unwrap(), None);
        assert_eq!(
            shard_from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "12"),
                ("SLURM_ARRAY_TASK_MIN", "10"),
                ("SLURM_ARRAY_TASK_COUNT", "4")
            ]))
            .unwrap(),
            Some((2, 4))
        );
        assert_eq!(
            shard_from_env(env(&[("JOB_COMPLETION_INDEX", "3"), ("FLASHSLIDE_SHARDS", "8")])).unwrap(),
            Some((3, 8))
        );
        assert!(shard_from_env(env(&[("JOB_COMPLETION_INDEX", "3")])).is_err());
        assert!(shard_from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4")
        ]))
        .is_err());
        assert_eq!(parse_shard("2/5").unwrap(), (2, 5));
        assert!(parse_shard("5/5").is_err() && parse_shard("x").is_err());
    }
}
