//! `flashslide serve` as a browser and an attacker meet it, over real sockets: the index and a
//! slide's viewer, its DeepZoom descriptor and tiles (against the slide's own pixels), the
//! overlay's data (against the run's summary), a slide found again after it moved, an
//! unreadable slide giving an error tile; hostile requests answered 4xx with the server still
//! serving; and the viewer in headless Chromium over the sample's lesion, the sliders changing
//! what is drawn.

mod common;

use flashslide::slide::Slide;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

const NAME: &str = "synth-s101-000.svs";

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn flashslide(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_flashslide"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A copy of sample s101 in its own folder, run once: (slides folder, output folder).
fn analysed() -> &'static (PathBuf, PathBuf) {
    static RUN: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let slides = tmp("serve-slides");
        let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        for f in [NAME, "synth-s101-000.lesions.json"] {
            std::fs::copy(samples.join(f), slides.join(f)).unwrap();
        }
        let out = tmp("serve-out");
        flashslide(&[
            "run",
            slides.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--quiet",
        ]);
        (slides, out)
    })
}

/// A running `flashslide serve` on a free port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(out: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashslide"))
            .args(["serve", out.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Server { child, port }
    }

    /// Sends `raw` as the request; returns the status, headers and body.
    fn send(&self, raw: &[u8]) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(raw).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
        let head = String::from_utf8_lossy(&reply[..split]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head, reply[split + 4..].to_vec())
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let (status, _, body) =
            self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        (status, body)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pages_tiles_and_overlay_match_the_slide_and_its_run() {
    let (slides, out) = analysed();
    let server = Server::start(out, &[]);
    let (status, index) = server.get("/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&index).contains(&format!("view/{NAME}/")));
    let (status, page) = server.get(&format!("/view/{NAME}/"));
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("/_flashslide/openseadragon.min.js"));
    assert_eq!(server.get("/_flashslide/openseadragon.min.js").0, 200);
    // Output files are sent whole, in pieces; HEAD says their size and sends nothing.
    let heatmap = std::fs::read(out.join(NAME).join("heatmap.png")).unwrap();
    assert_eq!(
        server.get(&format!("/{NAME}/heatmap.png")),
        (200, heatmap.clone())
    );
    let (status, head, body) = server.send(
        format!("HEAD /{NAME}/heatmap.png HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("Content-Length: {}", heatmap.len())),
        "{head}"
    );
    assert!(body.is_empty());

    let slide = Slide::open(slides.join(NAME)).unwrap();
    let (w, h) = slide.dimensions();
    let (status, dzi) = server.get(&format!("/view/{NAME}/slide.dzi"));
    assert_eq!(status, 200);
    let dzi = String::from_utf8(dzi).unwrap();
    assert!(dzi.contains(&format!("Width=\"{w}\" Height=\"{h}\"")), "{dzi}");

    // The slide stores 256-px JPEG tiles: served as 256-px tiles without overlap.
    assert!(
        dzi.contains("TileSize=\"256\"") && dzi.contains("Overlap=\"0\""),
        "{dzi}"
    );
    let top = (w.max(h) as f64).log2().ceil() as usize;
    // A whole tile (sent as stored), the right edge's partial one and the corner's: each
    // the slide's own pixels, up to JPEG rounding.
    for (col, row) in [(3u64, 2u64), (w / 256, 5), (w / 256, h / 256)] {
        let (status, jpeg) = server.get(&format!("/view/{NAME}/slide_files/{top}/{col}_{row}.jpeg"));
        assert_eq!(status, 200);
        let tile = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        let (tw, th) = (256.min(w - col * 256) as u32, 256.min(h - row * 256) as u32);
        assert_eq!(tile.dimensions(), (tw, th), "tile ({col}, {row})");
        let want = slide
            .read_region(0, (col * 256) as i64, (row * 256) as i64, tw, th)
            .unwrap()
            .to_rgb_on_white();
        let diff: f64 = tile
            .as_raw()
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / want.len() as f64;
        assert!(
            diff < 3.0,
            "tile ({col}, {row}) differs from the slide by {diff} on average"
        );
    }
    // A zoomed-out level: the whole slide in one tile.
    let (status, jpeg) = server.get(&format!("/view/{NAME}/slide_files/{}/0_0.jpeg", top - 5));
    assert_eq!(status, 200);
    let small = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        (small.width() as u64, small.height() as u64),
        (w.div_ceil(32), h.div_ceil(32))
    );

    let (status, overlay) = server.get(&format!("/view/{NAME}/overlay.json"));
    assert_eq!(status, 200);
    let overlay: Value = serde_json::from_slice(&overlay).unwrap();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(NAME).join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        overlay["regions"].as_array().unwrap().len() as u64,
        summary["tumour_regions"].as_u64().unwrap()
    );
    assert_eq!(
        overlay["detections"].as_array().unwrap().len() as u64,
        summary["detections"].as_u64().unwrap()
    );
    let values = overlay["grid"]["values"].as_array().unwrap();
    let tokens = values.iter().filter(|v| !v.is_null()).count() as u64;
    assert_eq!(tokens, summary["tokens"].as_u64().unwrap());
    let highest = values.iter().filter_map(Value::as_f64).fold(0.0, f64::max);
    assert!((highest - summary["max_probability"].as_f64().unwrap()).abs() < 1e-4);
    assert_eq!(overlay["colormap"].as_array().unwrap().len(), 256);
}

#[test]
fn hostile_requests_get_4xx_and_the_server_keeps_serving() {
    let (_, out) = analysed();
    // A link inside OUT to a folder outside it.
    let outside = tmp("serve-outside");
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    let link = out.join("escape");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let server = Server::start(out, &[]);
    let long = format!("/{}", "a".repeat(5000));
    let level = format!("/view/{NAME}/slide_files");
    let cases: Vec<(String, u16)> = vec![
        ("/../../etc/passwd".into(), 400),
        ("/%2e%2e/%2e%2e/etc/passwd".into(), 400),
        ("/view/..%2F..%2Fetc/".into(), 400),
        ("/escape/secret.txt".into(), 403),
        ("/view/escape/".into(), 404),
        ("/view/no-such-slide/".into(), 404),
        ("/%00".into(), 400),
        ("/%zz".into(), 400),
        ("/a//b".into(), 400),
        ("/.hidden".into(), 404),
        (format!("{level}/-1/0_0.jpeg"), 400),
        (format!("{level}/99/0_0.jpeg"), 404),
        (format!("{level}/13/99999_0.jpeg"), 404),
        (format!("{level}/13/99999999999_0.jpeg"), 400),
        (format!("{level}/13/0_0.png"), 400),
        (format!("{level}/13/0_0_0.jpeg"), 400),
        (format!("{level}/13/0x1_0.jpeg"), 400),
        (format!("{level}/1e3/0_0.jpeg"), 400),
        (long, 414),
    ];
    for (path, want) in &cases {
        let (status, _) = server.get(path);
        assert_eq!(status, *want, "{path}");
    }
    let (status, _, _) =
        server.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 405);
    let (status, _, _) = server.send(b"GARBAGE\r\n\r\n");
    assert_eq!(status, 400);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000));
    let (status, _, _) = server.send(huge.as_bytes());
    assert_eq!(status, 413);
    // Keep-alive: two requests on one connection, both answered.
    let (_, head, body) = server.send(b"GET /view/synth-s101-000.svs/slide.dzi HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"));
    assert!(
        String::from_utf8_lossy(&body).contains("HTTP/1.1 200"),
        "second response"
    );
    assert_eq!(server.get("/").0, 200);
    std::fs::remove_file(&link).unwrap();
}

/// The slide moved after the run: found under --slides by its size and first and last MiB;
/// without --slides, the viewer says where it looked. Then made unreadable: an error tile,
/// and the server goes on.
#[test]
fn a_moved_slide_is_found_and_an_unreadable_one_gives_an_error_tile() {
    let (slides, _) = analysed();
    let (moved, out) = (tmp("serve-moved"), tmp("serve-moved-out"));
    let original = tmp("serve-moved-original");
    std::fs::copy(slides.join(NAME), original.join(NAME)).unwrap();
    flashslide(&[
        "run",
        original.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ]);
    std::fs::rename(original.join(NAME), moved.join(NAME)).unwrap();
    let tile = format!("/view/{NAME}/slide_files/13/0_0.jpeg");
    {
        let server = Server::start(&out, &[]);
        assert_eq!(server.get(&tile).0, 404);
        let (_, overlay) = server.get(&format!("/view/{NAME}/overlay.json"));
        let overlay: Value = serde_json::from_slice(&overlay).unwrap();
        assert!(overlay["slide_error"].as_str().unwrap().contains("not found"));
    }
    let server = Server::start(&out, &["--slides", moved.to_str().unwrap()]);
    assert_eq!(server.get(&tile).0, 200);
    // Cut short: the tiles not read yet cannot be decoded.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(moved.join(NAME))
        .unwrap();
    f.set_len(600_000).unwrap();
    let (status, head, body) = server.send(
        format!(
            "GET /view/{NAME}/slide_files/13/19_15.jpeg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status, 500, "{head}");
    assert!(head.contains("X-Flashslide-Error"), "{head}");
    assert!(
        image::load_from_memory(&body).is_ok(),
        "an error tile is an image"
    );
    assert_eq!(server.get("/").0, 200);
}

/// The viewer in headless Chromium, over the sample's largest lesion (its lesions.json
/// polygon): with the overlay opaque, the view's centre is the colours of high probability;
/// with the threshold at 1 or the opacity at 0, those colours are gone.
#[test]
fn the_viewer_shows_the_lesion_hot_and_the_sliders_change_it() {
    let Some(chromium) = common::chromium("the_viewer_shows_the_lesion_hot_and_the_sliders_change_it") else {
        return;
    };
    let (slides, out) = analysed();
    let server = Server::start(out, &[]);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(slides.join("synth-s101-000.lesions.json")).unwrap())
            .unwrap();
    let lesion = truth["lesions"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| {
            a["area_um2"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["area_um2"].as_f64().unwrap())
        })
        .unwrap();
    let points: Vec<(f64, f64)> = lesion["polygon"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let (x0, y0) = points
        .iter()
        .fold((f64::MAX, f64::MAX), |a, p| (a.0.min(p.0), a.1.min(p.1)));
    let (x1, y1) = points
        .iter()
        .fold((f64::MIN, f64::MIN), |a, p| (a.0.max(p.0), a.1.max(p.1)));
    let dir = tmp("serve-chromium");
    let shot = |name: &str, query: &str| -> image::RgbImage {
        let png = dir.join(format!("{name}.png"));
        let url = server.url(&format!(
            "/view/{NAME}/?x={x0:.0}&y={y0:.0}&w={:.0}&h={:.0}&{query}",
            x1 - x0,
            y1 - y0
        ));
        let o = Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                // Every compositor stage before the screenshot: fewer shots taken before
                // the overlay is drawn.
                "--run-all-compositor-stages-before-draw",
                "--virtual-time-budget=30000",
                "--window-size=1100,800",
            ])
            .arg(format!("--screenshot={}", png.display()))
            .arg(&url)
            .output()
            .unwrap();
        assert!(png.exists(), "{}", String::from_utf8_lossy(&o.stderr));
        image::open(&png).unwrap().to_rgb8()
    };
    // Viridis' upper end (green-yellow): in no stain's colours.
    let hot = |img: &image::RgbImage| {
        let (w, h) = img.dimensions();
        // The viewer's centre: the side panel takes the right 300 px.
        let (cx, cy) = ((w - 300) / 2, h / 2);
        let mut n = 0;
        for y in cy - 100..cy + 100 {
            for x in cx - 100..cx + 100 {
                let p = img.get_pixel(x, y);
                if p[1] > 150 && p[0] > 90 && p[2] < 110 {
                    n += 1;
                }
            }
        }
        n as f64 / 40_000.0
    };
    // Headless Chromium's screenshot does not wait for the page's own readiness (its title
    // says "ready:" once the slide and the overlay are in): one shot in eight to two in five
    // on the 2-core VM caught the main view before it drew the overlay that the navigator
    // already showed, and CI failed on it. So the opaque view gets up to five shots; a
    // viewer that never draws the overlay still fails.
    let (a, opaque) = (0..5)
        .map(|_| {
            let img = shot("opaque", "opacity=1");
            (hot(&img), img)
        })
        .find(|(a, _)| *a > 0.3)
        .unwrap_or_else(|| (0.0, image::RgbImage::new(1, 1)));
    let above_all = shot("threshold-1", "opacity=1&threshold=1");
    let clear = shot("clear", "opacity=0");
    let (b, c) = (hot(&above_all), hot(&clear));
    assert!(a > 0.3, "hot fraction {a} at the lesion with the overlay opaque");
    assert!(
        b < 0.02 && c < 0.02,
        "hot fraction {b} above threshold 1, {c} at opacity 0"
    );
    // FLASHSLIDE_DOCS_SCREENSHOT=1 refreshes the README's picture from this view.
    if std::env::var_os("FLASHSLIDE_DOCS_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/viewer.jpg");
        opaque.save(docs).unwrap();
    }
}
