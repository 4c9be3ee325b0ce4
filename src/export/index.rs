//! OUT/index.html: one static page over a whole output directory — every finished slide's
//! heatmap, key numbers and links to its files, then the failures with their reasons and the
//! slides not finished (interrupted, or held by another worker), from every batch report
//! there, so the shards of a cluster job show up together. Built from what is on disk, so it
//! also covers slides finished by earlier runs.

use super::write_atomically;
use crate::export::summary::Summary;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A probability to three places, or "no tissue" where none was computed.
fn score(p: Option<f32>) -> String {
    p.map_or("no tissue".into(), |p| format!("{p:.3}"))
}

/// Path text for an href: each component percent-encoded where needed.
fn href(name: &str, file: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!("{}/{}", enc(name), enc(file))
}

/// Writes `out/index.html`.
pub fn write_index(out: &Path) -> std::io::Result<()> {
    let mut finished: BTreeMap<String, Summary> = BTreeMap::new();
    let mut failures: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut unfinished: BTreeMap<String, (String, String)> = BTreeMap::new();
    for entry in std::fs::read_dir(out)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if let Some(s) = std::fs::read_to_string(path.join("summary.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Summary>(&t).ok())
            {
                finished.insert(name, s);
            }
        } else if name.starts_with("batch-report") && name.ends_with(".json") {
            let report: serde_json::Value = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            for s in report["slides"].as_array().into_iter().flatten() {
                let field = |k: &str| s[k].as_str().unwrap_or("").to_string();
                match s["outcome"].as_str() {
                    Some("failed") => {
                        failures.insert(field("name"), (field("slide"), field("reason")));
                    }
                    Some("interrupted") => {
                        unfinished.insert(field("name"), (field("slide"), "interrupted".into()));
                    }
                    Some("busy") => {
                        let why = format!("held by another worker ({})", field("holder"));
                        unfinished.insert(field("name"), (field("slide"), why));
                    }
                    _ => {}
                }
            }
        }
    }
    failures.retain(|name, _| !finished.contains_key(name));
    unfinished.retain(|name, _| !finished.contains_key(name) && !failures.contains_key(name));
    write_atomically(&out.join("index.html"), |f| {
        writeln!(
            f,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>flashslide results</title>\n<style>\
             body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} .grid{{display:flex;flex-wrap:wrap;gap:1.5em}}\
             .card{{width:360px;border:1px solid #ccc;border-radius:6px;padding:.8em}} .card img{{width:100%;height:auto}}\
             table{{border-collapse:collapse;font-size:.9em}} td{{padding:.1em .6em .1em 0}} .fail{{color:#a00}}</style></head><body>"
        )?;
        writeln!(
            f,
            "<h1>flashslide results</h1><p>{} slides analysed, {} failed. Heatmaps: tumour probability in viridis (dark blue 0, yellow 1) over the tissue; click one to zoom in (served by <code>flashslide serve</code>).</p><div class=\"grid\">",
            finished.len(),
            failures.len()
        )?;
        for (name, s) in &finished {
            writeln!(
                f,
                "<div class=\"card\"><h3>{}</h3><a href=\"view/{}\" title=\"zoom in (flashslide serve)\"><img src=\"{}\" alt=\"heatmap of {}\"></a><table>\
                 <tr><td>slide score</td><td>{}</td></tr><tr><td>max probability</td><td>{}</td></tr>\
                 <tr><td>tumour area</td><td>{:.3} mm²</td></tr><tr><td>tumour regions</td><td>{}</td></tr>\
                 <tr><td>tiles / tokens</td><td>{} / {}</td></tr><tr><td>time</td><td>{:.1} s on {}</td></tr>\
                 <tr><td>model</td><td>{}</td></tr></table>{}<p>",
                escape(name),
                href(name, ""),
                href(name, "heatmap.png"),
                escape(name),
                score(s.slide_probability),
                score(s.max_probability),
                s.tumour_area_mm2,
                s.tumour_regions,
                s.tissue_tiles,
                s.tokens,
                s.seconds.total,
                escape(&s.device),
                escape(&s.model),
                s.model_notice
                    .as_deref()
                    .map_or(String::new(), |n| format!("<p class=\"fail\">Model: {}</p>", escape(n)))
            )?;
            for file in s
                .outputs
                .iter()
                .chain(std::iter::once(&"summary.json".to_string()))
            {
                write!(f, "<a href=\"{}\">{}</a> ", href(name, file), escape(file))?;
            }
            writeln!(f, "</p></div>")?;
        }
        writeln!(f, "</div>")?;
        for (title, class, list) in [("Failed", "fail", &failures), ("Not finished", "", &unfinished)] {
            if list.is_empty() {
                continue;
            }
            writeln!(f, "<h2 class=\"{class}\">{title}</h2><ul>")?;
            for (name, (slide, reason)) in list {
                writeln!(
                    f,
                    "<li><b>{}</b> ({}): {}</li>",
                    escape(name),
                    escape(slide),
                    escape(reason)
                )?;
            }
            writeln!(f, "</ul>")?;
        }
        // Says on the page, and in `data-images-loaded` for automated checks, whether every
        // heatmap loaded (a moved or half-copied output folder shows here first).
        writeln!(
            f,
            "<script>addEventListener('load',()=>{{const im=[...document.images];\
             const ok=im.filter(i=>i.complete&&i.naturalWidth>0).length;\
             document.body.dataset.imagesLoaded=ok+'/'+im.length;\
             if(ok<im.length){{const p=document.createElement('p');p.className='fail';\
             p.textContent=(im.length-ok)+' heatmap(s) could not be loaded';document.body.prepend(p);}}}});</script>"
        )?;
        writeln!(f, "</body></html>")
    })
}
