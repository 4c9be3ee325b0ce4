//! `flashslide serve OUT`: a run's outputs in the browser. OUT/index.html as it is, and for
//! each finished slide a viewer (OpenSeadragon, embedded) over DeepZoom tiles of the slide
//! itself, rendered on demand from its own levels, with the tumour probability, regions and
//! detections over it. Only what lies under OUT and the slides its summaries name is served;
//! request paths are decoded strictly and refused with 4xx, never followed out of OUT.

pub mod deepzoom;
mod http;
mod overlay;
mod paths;
mod viewer;

use crate::export::summary::Summary;
use crate::slide::fingerprint::{fingerprint, Fingerprint};
use crate::slide::Slide;
use deepzoom::Pyramid;
use http::{Request, Response};
use std::collections::VecDeque;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Slides kept open at once (each with its own tile cache).
const OPEN_SLIDES: usize = 4;
/// Decoded slide tiles kept per open slide.
const SLIDE_CACHE_BYTES: usize = 96 << 20;
/// Rendered DeepZoom tiles kept, JPEG bytes.
const TILE_CACHE_BYTES: usize = 64 << 20;
const JPEG_QUALITY: u8 = 85;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{}: {source}", path.display())]
    Out { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct ServeOptions {
    pub out: PathBuf,
    /// Folders to search for slides that moved since their run.
    pub slides: Vec<PathBuf>,
    pub bind: String,
    pub port: u16,
    pub threads: usize,
}

/// What the server knows: OUT, where to look for moved slides, the slides open, the tiles
/// rendered.
struct Catalogue {
    out: PathBuf,
    slide_dirs: Vec<PathBuf>,
    open: Mutex<VecDeque<(String, Arc<Viewed>)>>,
    tiles: Mutex<TileCache>,
}

/// A slide opened for viewing.
struct Viewed {
    dir: PathBuf,
    summary: Summary,
    slide: Result<Slide, String>,
    pyramid: Pyramid,
    overlay: OnceLock<Vec<u8>>,
}

/// Binds and serves until the process ends, printing the address first.
pub fn run(options: ServeOptions) -> Result<(), ServeError> {
    let catalogue = Catalogue::new(&options.out, options.slides)?;
    let address = format!("{}:{}", options.bind, options.port);
    let listener = TcpListener::bind(&address).map_err(|source| ServeError::Bind {
        address: address.clone(),
        source,
    })?;
    let local = listener.local_addr()?;
    println!("serving {} at http://{local}/", options.out.display());
    let catalogue = Arc::new(catalogue);
    http::serve(listener, options.threads, move |r| catalogue.respond(r))?;
    Ok(())
}

impl Catalogue {
    fn new(out: &Path, slide_dirs: Vec<PathBuf>) -> Result<Catalogue, ServeError> {
        let out = out.canonicalize().map_err(|source| ServeError::Out {
            path: out.to_path_buf(),
            source,
        })?;
        Ok(Catalogue {
            out,
            slide_dirs,
            open: Mutex::new(VecDeque::new()),
            tiles: Mutex::new(TileCache::default()),
        })
    }

    /// The response to one request; never panics on what a client sends.
    fn respond(&self, request: &Request) -> Response {
        let Some(segments) = paths::segments(request.path) else {
            return Response::error(400, "malformed or unsafe path");
        };
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        match parts.as_slice() {
            [] => self.file(&["index.html"]),
            ["_flashslide", "openseadragon.min.js"] => Response::ok(
                "text/javascript; charset=utf-8",
                viewer::OPENSEADRAGON.as_bytes().to_vec(),
            )
            .with_header("Cache-Control", "max-age=86400"),
            ["view", name] => {
                Response::error(301, "moved").with_header("Location", format!("{}/", paths::encode(name)))
            }
            ["view", name, ""] | ["view", name, "index.html"] => self.with_slide(name, |v| {
                Response::ok("text/html; charset=utf-8", viewer::page(name, v).into_bytes())
            }),
            ["view", name, "slide.dzi"] => self.with_slide(name, |v| match &v.slide {
                Ok(_) => Response::ok("application/xml", viewer::dzi(&v.pyramid).into_bytes()),
                Err(e) => Response::error(404, e),
            }),
            ["view", name, "overlay.json"] => self.with_slide(name, |v| {
                let body = v.overlay.get_or_init(|| overlay::json(v));
                Response::ok("application/json", body.clone())
            }),
            ["view", name, "slide_files", level, tile] => self.tile(name, level, tile),
            _ => self.file(&parts),
        }
    }

    /// A file under OUT, never one a link leads out of it to.
    fn file(&self, parts: &[&str]) -> Response {
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.starts_with('.')) {
            return Response::error(404, "not found");
        }
        let path = parts.iter().fold(self.out.clone(), |p, s| p.join(s));
        let Ok(real) = path.canonicalize() else {
            return Response::error(404, "not found");
        };
        if !real.starts_with(&self.out) || !real.is_file() {
            return Response::error(403, "outside the output folder");
        }
        let opened = std::fs::File::open(&real).and_then(|f| Ok((f.metadata()?.len(), f)));
        match opened {
            Ok((len, file)) => Response::file(paths::content_type(&real), file, len),
            Err(_) => Response::error(404, "not found"),
        }
    }

    fn with_slide(&self, name: &str, f: impl FnOnce(&Viewed) -> Response) -> Response {
        match self.viewed(name) {
            Some(v) => f(&v),
            None => Response::error(404, "no finished slide of that name"),
        }
    }

    /// Slide `name` of OUT, opened once and kept among the last few viewed.
    fn viewed(&self, name: &str) -> Option<Arc<Viewed>> {
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = open.iter().position(|(n, _)| n == name) {
                let entry = open.remove(i)?;
                let v = entry.1.clone();
                open.push_back(entry);
                return Some(v);
            }
        }
        // A slide's folder, really under OUT (not a link out of it).
        let dir = self.out.join(name).canonicalize().ok()?;
        if !dir.starts_with(&self.out) || dir == self.out {
            return None;
        }
        let summary: Summary = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).ok()?).ok()?;
        let slide = match locate(&summary, &self.slide_dirs) {
            Some(path) => Slide::open(&path).map_err(|e| e.to_string()),
            None => Err(format!(
                "slide {} not found where it was, nor under --slides (matched by size and the hashes of its first and last MiB)",
                summary.slide
            )),
        };
        if let Ok(s) = &slide {
            s.set_tile_cache_bytes(SLIDE_CACHE_BYTES);
        }
        let pyramid = match &slide {
            Ok(s) => Pyramid::for_slide(s),
            Err(_) => Pyramid::new(
                summary.dimensions[0],
                summary.dimensions[1],
                deepzoom::DEFAULT_TILE,
                deepzoom::DEFAULT_OVERLAP,
            ),
        };
        let viewed = Arc::new(Viewed {
            dir,
            summary,
            slide,
            pyramid,
            overlay: OnceLock::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.push_back((name.to_string(), viewed.clone()));
        while open.len() > OPEN_SLIDES {
            open.pop_front();
        }
        Some(viewed)
    }

    /// DeepZoom tile `slide_files/LEVEL/COL_ROW.jpeg` of slide `name`.
    fn tile(&self, name: &str, level: &str, tile: &str) -> Response {
        let parsed = (|| {
            let level: usize = paths::number(level)?;
            let (col, row) = tile.strip_suffix(".jpeg")?.split_once('_')?;
            Some((level, paths::number(col)?, paths::number(row)?))
        })();
        let Some((level, col, row)) = parsed else {
            return Response::error(400, "a tile is slide_files/LEVEL/COL_ROW.jpeg");
        };
        let Some(v) = self.viewed(name) else {
            return Response::error(404, "no finished slide of that name");
        };
        let Some(rect) = v.pyramid.tile(level, col, row) else {
            return Response::error(404, "no such tile");
        };
        let key = (name.to_string(), level, col, row);
        if let Some(jpeg) = self.tiles.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Response::ok("image/jpeg", jpeg.to_vec());
        }
        let slide = match &v.slide {
            Ok(s) => s,
            Err(e) => return Response::error(404, e),
        };
        // A stored tile as it is; else rendered.
        match deepzoom::stored_jpeg(slide, &v.pyramid, rect) {
            Ok(Some(jpeg)) => return Response::ok("image/jpeg", jpeg),
            Ok(None) => {}
            Err(e) => {
                return error_tile(rect).with_header("X-Flashslide-Error", paths::header_safe(&e.to_string()))
            }
        }
        let rendered = deepzoom::render(slide, rect)
            .map_err(|e| e.to_string())
            .and_then(|rgb| deepzoom::jpeg(&rgb, rect.width as u16, rect.height as u16, JPEG_QUALITY));
        match rendered {
            Ok(jpeg) => {
                let jpeg = Arc::new(jpeg);
                self.tiles
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, jpeg.clone());
                Response::ok("image/jpeg", jpeg.to_vec())
            }
            // An unreadable tile: an error tile (the viewer shows it grey), the server goes on.
            Err(e) => error_tile(rect).with_header("X-Flashslide-Error", paths::header_safe(&e)),
        }
    }
}

/// A grey tile of `rect`'s size with status 500.
fn error_tile(rect: deepzoom::TileRect) -> Response {
    let grey = vec![128u8; (rect.width * rect.height * 3) as usize];
    let jpeg = deepzoom::jpeg(&grey, rect.width as u16, rect.height as u16, 50).unwrap_or_default();
    Response {
        status: 500,
        content_type: "image/jpeg",
        body: jpeg,
        file: None,
        headers: Vec::new(),
    }
}

/// The slide a summary was made from: where it was, or else the slide under `dirs` with the
/// same size and first and last MiB (a moved or copied file has another modification time).
fn locate(summary: &Summary, dirs: &[PathBuf]) -> Option<PathBuf> {
    let wanted = &summary.fingerprint;
    let same = |p: &Path| {
        // Cheap first: a plain file of another size is not it.
        if p.is_file() && std::fs::metadata(p).is_ok_and(|m| m.len() != wanted.size) {
            return false;
        }
        fingerprint(p).is_ok_and(|f: Fingerprint| {
            f.size == wanted.size && f.head_tail_sha256 == wanted.head_tail_sha256
        })
    };
    let recorded = PathBuf::from(&summary.slide);
    if same(&recorded) {
        return Some(recorded);
    }
    if dirs.is_empty() {
        return None;
    }
    let found = crate::slide::discover::walk(dirs).ok()?;
    found.jobs.into_iter().map(|j| j.path).find(|p| same(p))
}

/// A rendered tile's name: slide, DeepZoom level, column, row.
type TileKey = (String, usize, u64, u64);

/// Rendered tiles, least recently used dropped first, bounded in bytes.
#[derive(Default)]
struct TileCache {
    tiles: VecDeque<(TileKey, Arc<Vec<u8>>)>,
    bytes: usize,
}

impl TileCache {
    fn get(&mut self, key: &TileKey) -> Option<Arc<Vec<u8>>> {
        let i = self.tiles.iter().rposition(|(k, _)| k == key)?;
        let entry = self.tiles.remove(i)?;
        let jpeg = entry.1.clone();
        self.tiles.push_back(entry);
        Some(jpeg)
    }

    fn insert(&mut self, key: TileKey, jpeg: Arc<Vec<u8>>) {
        self.bytes += jpeg.len();
        self.tiles.push_back((key, jpeg));
        while self.bytes > TILE_CACHE_BYTES {
            let Some((_, old)) = self.tiles.pop_front() else {
                break;
            };
            self.bytes -= old.len();
        }
    }
}
