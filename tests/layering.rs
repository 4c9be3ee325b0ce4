//! The house's layering (ARCHITECTURE.md), enforced: every `crate::` path in the library's
//! code is checked against what its module may import. A new import across the layers fails
//! here with the file, the line and the rule, before it ties the next knot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module of the library may import besides itself: whole modules, or
/// one submodule (`slide::mpp`) where only that part is meant. Read top to bottom, each row
/// names only rows above it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("slide", &["util"]),
    ("backend", &["util"]),
    ("annotation", &["util"]),
    // The model checks its config's pixel size by the slide's plausible range, nothing more.
    ("model", &["backend", "util", "slide::mpp"]),
    ("analysis", &["model", "backend", "slide", "annotation", "util"]),
    // Exports take results: a slide's analysis and its tissue mask, not batches or models.
    (
        "export",
        &["analysis::pipeline", "analysis::tissue", "slide", "util"],
    ),
    (
        "batch",
        &["analysis", "export", "model", "backend", "slide", "util"],
    ),
    ("synth", &["slide", "annotation", "util"]),
    // Scoring reads truth and finished runs' summaries.
    ("eval", &["annotation", "export::summary", "slide", "util"]),
    // Training and benchmarks use eval's metrics, not its internals; training validates on
    // detections made as `run` makes them.
    (
        "train",
        &[
            "analysis",
            "model",
            "backend",
            "slide",
            "annotation",
            "util",
            "eval::auroc",
            "eval::froc",
            "export::detections",
            "export::ProbabilityGrid",
        ],
    ),
    (
        "bench",
        &[
            "batch",
            "analysis",
            "export",
            "model",
            "backend",
            "slide",
            "util",
            "eval::froc",
            "eval::results",
            "eval::EvalError",
        ],
    ),
    // The viewer serves a run's outputs: their schema and colours, and the slides they name.
    (
        "serve",
        &[
            "export::summary",
            "export::colormap",
            "export::heatmap",
            "slide",
            "util",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b` in `text` outside comments, with its line: (line, "a", "a::b").
fn crate_paths(text: &str) -> Vec<(usize, String, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let path: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts = path.split("::").filter(|p| !p.is_empty());
            if let Some(top) = parts.next() {
                let second = parts.next().map_or(top.to_string(), |s| format!("{top}::{s}"));
                found.push((i + 1, top.to_string(), second));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn imports_follow_the_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        // The binary (main.rs, cli/) sits on top of everything; lib.rs only declares.
        if module == "main" || module == "cli" || module == "lib" {
            continue;
        }
        modules.insert(module.clone());
        let Some(may) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "src/{module}: a top-level module the layering table does not place"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, top, path) in crate_paths(&text) {
            if top == module || may.contains(&top.as_str()) || may.contains(&path.as_str()) {
                continue;
            }
            violations.push(format!(
                "{}:{line}: {module} imports crate::{path}; it may import {may:?}",
                Path::new("src").join(relative).display()
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "imports across the layers:\n{}",
        violations.join("\n")
    );
    let placed: BTreeSet<String> = allowed.keys().map(|k| k.to_string()).collect();
    assert_eq!(placed, modules, "the table places exactly the library's modules");
}

#[test]
fn the_layers_have_no_circles() {
    // Each row may name only rows above it: the table is a one-way order.
    for (i, (module, may)) in ALLOWED.iter().enumerate() {
        for target in may.iter() {
            let top = target.split("::").next().unwrap();
            let row = ALLOWED.iter().position(|(m, _)| *m == top);
            assert!(
                row.is_some_and(|r| r < i),
                "{module} may import {target}, which is not above it"
            );
        }
    }
}

#[test]
fn the_check_sees_imports_and_ignores_comments() {
    let text = "use crate::slide::Slide;\n// crate::batch::x\nlet a = crate::util::rng::Rng::new(1); // crate::eval\n";
    let found = crate_paths(text);
    assert_eq!(
        found,
        [
            (1, "slide".to_string(), "slide::Slide".to_string()),
            (3, "util".to_string(), "util::rng".to_string())
        ]
    );
}
