//! Which files are slides, and what each one's output folder is called.
//!
//! The walk is safe on any share: it opens nothing but regular files (a FIFO, socket or
//! device is skipped with a note, judged by its type before any open, a symlink by its
//! target's), searches each directory once (by device and inode, so a symlink loop neither
//! grows the walk nor finds a slide twice), goes at most [`MAX_DEPTH`] levels below an input,
//! and tells slides from other files by cheap checks (extension, TIFF header, flashslide's own
//! description in the first directory). The slide itself is opened by its own work, where a
//! failure is that slide's alone.

use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A slide to analyse.
#[derive(Clone, Debug, PartialEq)]
pub struct SlideJob {
    pub path: PathBuf,
    /// Path relative to the input it was found under (the file name for a file given
    /// directly): what shards hash.
    pub relative: String,
    /// The output folder's name: see [`output_name`].
    pub name: String,
}

/// What a walk found: the slides, and what it skipped and why.
pub struct Discovery {
    pub jobs: Vec<SlideJob>,
    pub notes: Vec<String>,
}

/// Directories deeper than this below an input are not searched (with a note).
pub const MAX_DEPTH: usize = 64;

/// Extensions of the formats flashslide reads; such a file is a slide even when its content
/// is damaged (so that it is reported, not skipped).
const SLIDE_EXTENSIONS: &[&str] = &["svs", "ndpi", "tif", "tiff", "btf", "scn", "bif", "mrxs"];

/// Entries of a first TIFF directory looked through for its description (real files have
/// a few dozen).
const MAX_ENTRIES: u64 = 4096;

/// Opens a file for reading without ever blocking: should it have been replaced by a FIFO
/// since its type was checked, the open returns at once and the type check fails.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// The first ten bytes of the ImageDescription of the first directory of the TIFF or
/// BigTIFF at `path`: the header, that directory's entries (up to [`MAX_ENTRIES`]) and those
/// ten bytes are all it reads.
fn description_head(path: &Path) -> Option<[u8; 10]> {
    let mut f = open_regular(path).ok()?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head[..8]).ok()?;
    let le = match &head[..2] {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    // An unsigned integer of 2, 4 or 8 bytes in the file's byte order.
    let uint = |b: &[u8]| {
        let mut a = [0u8; 8];
        if le {
            a[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(a)
        } else {
            a[8 - b.len()..].copy_from_slice(b);
            u64::from_be_bytes(a)
        }
    };
    let big = match uint(&head[2..4]) {
        42 => false,
        43 => true,
        _ => return None,
    };
    // Classic: 2-byte entry count, 12-byte entries of 4-byte counts and values; BigTIFF: 8,
    // 20 and 8.
    let (count_len, word) = if big { (8, 8) } else { (2, 4) };
    let ifd = if big {
        f.read_exact(&mut head[8..16]).ok()?;
        uint(&head[8..16])
    } else {
        uint(&head[4..8])
    };
    f.seek(SeekFrom::Start(ifd)).ok()?;
    let mut count = [0u8; 8];
    f.read_exact(&mut count[..count_len]).ok()?;
    let entry_len = 4 + 2 * word;
    let mut entries = vec![0u8; uint(&count[..count_len]).min(MAX_ENTRIES) as usize * entry_len];
    f.read_exact(&mut entries).ok()?;
    let entry = entries.chunks_exact(entry_len).find(|e| uint(&e[..2]) == 270)?;
    // Ten bytes or more are never stored in the entry itself: the value is their offset.
    if uint(&entry[4..4 + word]) < 10 {
        return None;
    }
    f.seek(SeekFrom::Start(uint(&entry[4 + word..]))).ok()?;
    let mut text = [0u8; 10];
    f.read_exact(&mut text).ok()?;
    Some(text)
}

/// A slide by extension or by content (a TIFF or BigTIFF header), unless it is one of
/// flashslide's own images (ground-truth masks, probability maps), which say so in their
/// description.
fn is_slide(path: &Path) -> bool {
    let by_extension = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SLIDE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        && !is_mrxs_without_folder(path);
    let mut magic = [0u8; 4];
    let by_content = open_regular(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && matches!(&magic, b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+");
    (by_extension || by_content) && description_head(path) != Some(*b"flashslide")
}

/// A MIRAX .mrxs file whose folder (its Slidedat.ini and data) is not beside it.
fn is_mrxs_without_folder(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mrxs"))
        && !path.with_extension("").join("Slidedat.ini").is_file()
}

/// Whole-slide formats flashslide does not read yet, by extension: such files are counted
/// in a note, not passed over in silence.
fn unread_format(path: &Path) -> Option<&'static str> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    Some(match extension.as_deref()? {
        // A DICOM file without the Part 10 header (a bare data set) names no series.
        "dcm" => "DICOM (without a Part 10 header)",
        "vms" | "vmu" => "Hamamatsu VMS/VMU",
        "isyntax" => "Philips iSyntax",
        "czi" => "Zeiss CZI",
        "svslide" => "Sakura SVSlide",
        "jp2" | "j2k" => "JPEG 2000",
        _ => return None,
    })
}

/// Whether a file starts as a DICOM Part 10 file (the preamble's "DICM").
fn is_dicom(path: &Path) -> bool {
    let mut preamble = [0u8; 132];
    open_regular(path)
        .and_then(|mut f| f.read_exact(&mut preamble))
        .is_ok_and(|_| super::dicom::is_dicom_header(&preamble))
}

/// A file's identity: device and inode, the same through every path to it.
#[cfg(unix)]
fn file_id(_path: &Path, meta: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(path: &Path, _meta: &Metadata) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .hash(&mut h);
    (0, h.finish())
}

/// What kind of special file `meta` is, for a note.
fn special_kind(meta: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "FIFO";
        } else if t.is_socket() {
            return "socket";
        } else if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    let _ = meta;
    "special file"
}

/// How a file or directory was reached: through how many symlinks, under which input, by
/// which path below it. The least way names a slide, so that another path to it (a symlink,
/// an overlapping input) never renames it, and directories are searched in this order, so
/// that each is searched by its least way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Way {
    links: usize,
    input: usize,
    relative: Vec<OsString>,
}

impl Way {
    fn relative_path(&self) -> PathBuf {
        self.relative.iter().collect()
    }
}

/// Every slide under `inputs` (files, and directories searched recursively), in a stable
/// order; see [`walk`].
pub fn discover(inputs: &[PathBuf]) -> std::io::Result<Vec<SlideJob>> {
    walk(inputs).map(|d| d.jobs)
}

/// Every slide under `inputs` (files, and directories searched recursively), in a stable
/// order, with notes on what was skipped. Unreadable inputs are errors (folders below them
/// are noted and skipped); hidden files
/// and folders, special files, and flashslide's own masks and probability maps are skipped
/// (a regular file given by name is always taken).
pub fn walk(inputs: &[PathBuf]) -> std::io::Result<Discovery> {
    let mut notes = Vec::new();
    // Each file once, by the first of its ways; the other paths to it (hard or symbolic
    // links) are said in a note.
    let mut files: HashMap<(u64, u64), (Way, PathBuf, Vec<PathBuf>)> = HashMap::new();
    let mut take = |id, way: Way, path: PathBuf| match files.get_mut(&id) {
        None => drop(files.insert(id, (way, path, Vec::new()))),
        Some(slot) if way < slot.0 => {
            let other = std::mem::replace(&mut slot.1, path);
            slot.0 = way;
            slot.2.push(other);
        }
        Some(slot) => slot.2.push(path),
    };
    let mut dirs = BinaryHeap::new();
    for (input, path) in inputs.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|e| with_path(path, e))?;
        let way = Way {
            links: 0,
            input,
            relative: path.file_name().map(OsStr::to_os_string).into_iter().collect(),
        };
        if meta.is_dir() {
            dirs.push(Reverse((
                Way {
                    relative: vec![],
                    ..way
                },
                path.clone(),
                file_id(path, &meta),
            )));
        } else if meta.is_file() {
            take(file_id(path, &meta), way, path.clone());
        } else {
            notes.push(format!(
                "{}: a {}, not a slide: skipped",
                path.display(),
                special_kind(&meta)
            ));
        }
    }
    let mut searched: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Folders holding DICOM files, by the way they were reached, and how many DICOM files the
    // walk saw in each (none: a folder only of files named as inputs): each whole-slide
    // series in one is a slide.
    let mut dicom_dirs: std::collections::BTreeMap<PathBuf, (Way, usize)> = Default::default();
    let mut dicom_inputs: Vec<((u64, u64), PathBuf)> = Vec::new();
    let mut unread: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut mrxs_alone = 0usize;
    while let Some(Reverse((way, dir, id))) = dirs.pop() {
        if let Some(first) = searched.get(&id) {
            notes.push(format!(
                "{}: the same folder as {}, not searched again",
                dir.display(),
                first.display()
            ));
            continue;
        }
        searched.insert(id, dir.clone());
        let listed = std::fs::read_dir(&dir).and_then(|d| d.collect::<Result<Vec<_>, _>>());
        let mut entries = match listed {
            Ok(entries) => entries,
            // An input the user named must be readable; a folder found below it that is
            // not (permissions, a vanished mount) is noted and the rest searched.
            Err(e) if way.relative.is_empty() => return Err(with_path(&dir, e)),
            Err(e) => {
                notes.push(format!("{}: {e}: not searched", dir.display()));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let mut child = way.clone();
            child.relative.push(entry.file_name());
            // Never stat through a link before knowing it is one; a link is judged by its
            // target (stat does not open, so a FIFO cannot block it).
            let link = match entry.file_type() {
                Ok(t) => t.is_symlink(),
                Err(e) => {
                    notes.push(format!("{}: {e}: skipped", path.display()));
                    continue;
                }
            };
            let meta = if link {
                child.links += 1;
                std::fs::metadata(&path)
            } else {
                entry.metadata()
            };
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    notes.push(format!("{}: {e}: skipped", path.display()));
                    continue;
                }
            };
            if meta.is_dir() {
                if child.relative.len() > MAX_DEPTH {
                    notes.push(format!(
                        "{}: more than {MAX_DEPTH} folders deep: not searched",
                        path.display()
                    ));
                } else {
                    dirs.push(Reverse((child, path.clone(), file_id(&path, &meta))));
                }
            } else if !meta.is_file() {
                notes.push(format!(
                    "{}: a {}, not a slide: skipped",
                    path.display(),
                    special_kind(&meta)
                ));
            } else if is_slide(&path) {
                take(file_id(&path, &meta), child, path);
            } else if is_dicom(&path) {
                dicom_dirs
                    .entry(dir.clone())
                    .or_insert_with(|| (way.clone(), 0))
                    .1 += 1;
            } else if is_mrxs_without_folder(&path) {
                mrxs_alone += 1;
            } else if let Some(kind) = unread_format(&path) {
                *unread.entry(kind).or_default() += 1;
            }
        }
    }
    // DICOM: each whole-slide series is one slide. A folder of one series is the slide,
    // named by the folder; in a folder of several, each is named by the folder and its series
    // UID and opened from its first file. A DICOM file named as an input stands for its
    // series; a series reached twice (two of its files named, or its folder too) is taken once.
    for (id, (way, path, _)) in files
        .iter()
        .filter(|(_, (way, path, _))| way.relative.len() == 1 && is_dicom(path))
    {
        if !is_slide(path) {
            let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
            dicom_dirs.entry(folder).or_insert_with(|| {
                let way = Way {
                    relative: vec![],
                    ..way.clone()
                };
                (way, 0)
            });
            dicom_inputs.push((*id, path.clone()));
        }
    }
    let mut series_jobs: Vec<(Way, PathBuf)> = Vec::new();
    let mut not_wsi = 0;
    for (dir, (way, seen)) in dicom_dirs {
        let series = match super::formats::folder_series(&dir) {
            Ok(series) => series,
            Err(e) => {
                notes.push(format!("{}: {e}: its DICOM files skipped", dir.display()));
                continue;
            }
        };
        let named: Vec<&PathBuf> = dicom_inputs
            .iter()
            .filter(|(_, p)| p.parent() == Some(dir.as_path()))
            .map(|(_, p)| p)
            .collect();
        let searched_here = seen > 0;
        if searched_here {
            not_wsi += seen.saturating_sub(series.iter().map(|(_, f)| f.len()).sum());
        }
        let single = series.len() == 1;
        for (uid, members) in series {
            // Only the series of files named, when the folder itself was not searched.
            if !searched_here && !members.iter().any(|m| named.contains(&m)) {
                continue;
            }
            let mut relative = way.relative.clone();
            if relative.is_empty() {
                relative.extend(
                    dir.canonicalize()
                        .unwrap_or(dir.clone())
                        .file_name()
                        .map(OsStr::to_os_string),
                );
            }
            let path = if single {
                dir.clone()
            } else {
                relative.push(OsString::from(&uid));
                members[0].clone()
            };
            series_jobs.push((
                Way {
                    relative,
                    ..way.clone()
                },
                path,
            ));
        }
    }
    for (id, path) in dicom_inputs {
        if files.remove(&id).is_some() && super::formats::series_members(&path).ok().flatten().is_none() {
            notes.push(format!(
                "{}: a DICOM file that is not a whole-slide image: skipped",
                path.display()
            ));
        }
    }
    if not_wsi > 0 {
        let files = if not_wsi == 1 { "file" } else { "files" };
        notes.push(format!(
            "{not_wsi} DICOM {files} that are not whole-slide images: skipped"
        ));
    }
    if mrxs_alone > 0 {
        let files = if mrxs_alone == 1 { "file" } else { "files" };
        notes.push(format!(
            "{mrxs_alone} MIRAX .mrxs {files} without its folder of the same name (Slidedat.ini and data): skipped"
        ));
    }
    for (kind, count) in unread {
        let files = if count == 1 { "file" } else { "files" };
        notes.push(format!("{count} {kind} {files}: not read yet"));
    }
    let mut found: Vec<(Way, PathBuf)> = Vec::new();
    let mut linked = Vec::new();
    for (way, path, others) in files.into_values() {
        for other in others {
            linked.push(format!(
                "{}: the same file as {}, analysed once",
                other.display(),
                path.display()
            ));
        }
        found.push((way, path));
    }
    linked.sort();
    notes.extend(linked);
    found.extend(series_jobs);
    found.sort_by_key(|(way, path)| (lossy(&way.relative_path()), path.clone()));
    // Two inputs can hold the same relative path: those slides are named by their own
    // absolute paths instead, which no other slide changes.
    let mut uses: HashMap<String, usize> = HashMap::new();
    for (way, _) in &found {
        *uses.entry(output_name(&way.relative_path())).or_default() += 1;
    }
    let jobs = found
        .into_iter()
        .map(|(way, path)| {
            let relative = way.relative_path();
            let mut name = output_name(&relative);
            if uses[&name] > 1 {
                let absolute = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                name = hashed_name(&relative, &bytes(absolute.as_os_str()));
            }
            SlideJob {
                relative: lossy(&relative),
                path,
                name,
            }
        })
        .collect();
    Ok(Discovery { jobs, notes })
}

fn lossy(relative: &Path) -> String {
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A name's bytes (on Unix exactly; elsewhere as UTF-8, lossily).
fn bytes(s: &OsStr) -> Cow<'_, [u8]> {
    #[cfg(unix)]
    return Cow::Borrowed(std::os::unix::ffi::OsStrExt::as_bytes(s));
    #[cfg(not(unix))]
    return Cow::Owned(s.to_string_lossy().into_owned().into_bytes());
}

/// Longest output folder name kept as it is (file systems allow 255 bytes).
const MAX_NAME: usize = 200;

fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The output folder's name for a slide at `relative` (its path below the input it was
/// found under), a function of that path alone. Folders are joined by "__", the extension
/// kept: `s.tif` → `s.tif`, `a/b/s.svs` → `a__b__s.svs`. A path that this would not map
/// one-to-one — a character outside [A-Za-z0-9._-], a part that is empty, starts with '.',
/// starts or ends with '_' or holds "__", or a name over 200 bytes — has those characters
/// replaced by '_' and `~` and 16 hex digits of the path's SHA-256 added before the
/// extension (`a/b c.svs` → `a__b_c~<hash>.svs`); plain names hold no `~`, so the two kinds
/// never meet.
pub fn output_name(relative: &Path) -> String {
    let parts: Vec<Cow<[u8]>> = relative.components().map(|c| bytes(c.as_os_str())).collect();
    let plain = |p: &[u8]| {
        !p.is_empty()
            && !matches!(p[0], b'.' | b'_')
            && p.last() != Some(&b'_')
            && !p.windows(2).any(|w| w == b"__")
            && p.iter().all(|&b| safe_byte(b))
    };
    let joined = parts.join(&b"__"[..]);
    if !parts.is_empty() && parts.iter().all(|p| plain(p)) && joined.len() <= MAX_NAME {
        return String::from_utf8(joined).expect("only ASCII bytes");
    }
    hashed_name(relative, &parts.join(&b"/"[..]))
}

/// `relative` made safe, with a hash of `identity` before its extension.
fn hashed_name(relative: &Path, identity: &[u8]) -> String {
    let hash: String = Sha256::digest(identity)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ext = relative
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| e.len() <= 16 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map_or(String::new(), |e| format!(".{e}"));
    let full = lossy(relative);
    let stem: String = full[..full.len() - ext.len()]
        .split('/')
        .collect::<Vec<_>>()
        .join("__")
        .bytes()
        .map(|b| if safe_byte(b) { b as char } else { '_' })
        .take(MAX_NAME - 40)
        .collect();
    format!("{}~{hash}{ext}", stem.trim_start_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(relative: &str) -> String {
        output_name(Path::new(relative))
    }

    #[test]
    fn names_are_safe_one_to_one_and_keep_the_extension() {
        assert_eq!(name("s.tif"), "s.tif");
        assert_eq!(name("x/slide.1.ndpi"), "x__slide.1.ndpi");
        assert_ne!(name("s.tif"), name("s.svs"));
        assert_ne!(name("a/s.svs"), name("b/s.svs"));
        // Paths the plain rule would merge get a hash of themselves, never each other's name.
        let hashed = [
            "a/b c.svs",
            "a__b_c.svs",
            "a__b.svs",
            "a/_b.svs",
            "a_/b.svs",
            ".hidden.svs",
            "weird:*?.tif",
            "é.svs",
        ];
        let mut all: Vec<String> = hashed.iter().map(|p| name(p)).collect();
        assert_eq!(all[0], format!("a__b_c~{}.svs", &all[0][7..23]));
        assert!(
            all.iter()
                .all(|n| n.contains('~') && n.bytes().all(|b| safe_byte(b) || b == b'~')),
            "{all:?}"
        );
        assert!(!all[5].starts_with('.') && all[6].ends_with(".tif"));
        all.push(name("a/b.svs"));
        all.push(name("a/b_c.svs"));
        assert_eq!(all.last().unwrap(), "a__b_c.svs");
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "{all:?}");
        // Long paths stay within file-system limits.
        let deep = vec!["folder"; 64].join("/") + "/s.svs";
        assert!(name(&deep).len() < 255 && name(&deep).ends_with(".svs"));
    }

    #[test]
    fn the_same_relative_path_under_two_inputs_is_named_by_each_ones_own_path() {
        let root = std::env::temp_dir().join(format!("flashslide-discover-{}", std::process::id()));
        let (a, b) = (root.join("a"), root.join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("sub/s.svs"), dir.to_string_lossy().as_bytes()).unwrap();
        }
        let names = |inputs: &[&PathBuf]| -> Vec<String> {
            let inputs: Vec<PathBuf> = inputs.iter().map(|p| p.to_path_buf()).collect();
            walk(&inputs).unwrap().jobs.into_iter().map(|j| j.name).collect()
        };
        assert_eq!(names(&[&a]), ["sub__s.svs"]);
        let both = names(&[&a, &b]);
        assert!(
            both[0] != both[1]
                && both
                    .iter()
                    .all(|n| n.starts_with("sub__s~") && n.ends_with(".svs"))
        );
        // Each one's name is its own: the order of the inputs does not swap them.
        let mut swapped = names(&[&b, &a]);
        swapped.sort();
        let mut sorted = both.clone();
        sorted.sort();
        assert_eq!(swapped, sorted);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_reached_by_two_names_is_taken_once_with_a_note() {
        let root = std::env::temp_dir().join(format!("flashslide-links-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.svs"), b"II*\0").unwrap();
        std::fs::hard_link(root.join("a.svs"), root.join("b.svs")).unwrap();
        let found = walk(std::slice::from_ref(&root)).unwrap();
        assert_eq!(found.jobs.len(), 1);
        assert_eq!(found.jobs[0].name, "a.svs");
        assert_eq!(found.notes.len(), 1, "{:?}", found.notes);
        assert!(found.notes[0].contains("b.svs: the same file as") && found.notes[0].contains("a.svs"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
