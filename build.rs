//! Build script: embeds the CUDA sources (kernels/*.cu and the headers they include) in the
//! binary, for NVRTC to compile at run time for the GPU in hand, and reads every kernel's
//! signature from them: the Rust side takes kernel names, parameter types and the attention
//! kernels' block sizes from that table (src/backend/cuda/kernels.rs), never from copies.
//! Nothing of CUDA is needed to build.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    // Read at run time: a build script compiled in another checkout of the same sources
    // (a worktree) is reused by cargo, and a compile-time path would point there.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("kernels");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("kernels/ exists")
        .map(|e| e.expect("kernels/ is readable").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("cu" | "cuh")))
        .collect();
    files.sort();
    let mut code = String::from("/// (file name, source) of every kernel file (`.cu`) and header (`.cuh`).\npub const SOURCES: &[(&str, &str)] = &[\n");
    let mut table = String::from("/// Every kernel of kernels/*.cu: its file, name and parameters, as declared there.\npub const KERNELS: &[KernelSignature] = &[\n");
    let mut flash = String::from("/// The attention kernels (kernels/flash_attn*.cu), with their tile sizes.\npub const FLASH_KERNELS: &[FlashKernel] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().unwrap().to_str().unwrap();
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
        if !name.ends_with(".cu") {
            continue;
        }
        let source = std::fs::read_to_string(path).expect("a kernel file is readable");
        let parsed = parse(&source).unwrap_or_else(|e| panic!("kernels/{name}: {e}"));
        for k in &parsed.kernels {
            let params: Vec<String> = k.params.iter().map(|p| p.rust()).collect();
            writeln!(
                table,
                "    KernelSignature {{ file: {name:?}, name: {:?}, params: &[{}] }},",
                k.name,
                params.join(", ")
            )
            .unwrap();
            if let Some(args) = k.macro_args.as_ref() {
                if FLASH_MACROS.contains(&k.macro_name.as_str()) {
                    flash.push_str(&flash_kernel(name, &k.name, args, &parsed.constants));
                }
            }
        }
    }
    code.push_str("];\n");
    table.push_str("];\n");
    flash.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).to_path_buf();
    std::fs::write(out.join("kernel_sources.rs"), code).unwrap();
    std::fs::write(out.join("kernel_table.rs"), table + "\n" + &flash).unwrap();
}

/// The macros that declare the attention kernels `attention::attention_kernel` chooses
/// among (training's forward with log-sum-exp, `FLASH_KERNEL_LSE`, is found by name).
const FLASH_MACROS: [&str; 3] = ["FLASH_KERNEL", "FLASH_KERNEL_SM90", "FLASH_KERNEL_SM90_TMA"];

/// One attention kernel's entry. flash_attn.cu: `FLASH_KERNEL(NAME, BF16, D, LD, MT, BN, ...)`
/// declares it (LD its shared-memory row stride), MT 16-row tiles per warp and WARPS warps a
/// block make its query rows. flash_attn_sm90.cu: `FLASH_KERNEL_SM90(NAME, BF16, D, BN,
/// PIPELINED)`, WARPGROUPS warpgroups of 64 query rows, rows of D values (in 128-byte
/// panels), three K/V stages when pipelined. flash_attn_sm90_tma.cu:
/// `FLASH_KERNEL_SM90_TMA(NAME, BF16, D, BN, STAGES, C, PERSISTENT)`, C consumer warpgroups
/// of 64 query rows and a producer warpgroup, rows of D values padded to whole 64-value
/// panels, persistent blocks or one a tile.
fn flash_kernel(
    file: &str,
    name: &str,
    args: &HashMap<String, String>,
    constants: &HashMap<String, i64>,
) -> String {
    let number = |key: &str| -> i64 {
        args.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("kernels/{file}: {name}: {key} is not a number"))
    };
    let constant = |key: &str| -> i64 {
        *constants
            .get(key)
            .unwrap_or_else(|| panic!("kernels/{file}: constexpr int {key}"))
    };
    let (family, stages, row_stride, block_m, threads) = if file == "flash_attn_sm90.cu" {
        let groups = constant("WARPGROUPS");
        let (family, stages) = match args.get("PIPELINED").map(String::as_str) {
            Some("true") => ("WgmmaPipelined", 3),
            _ => ("Wgmma", 2),
        };
        (family, stages, number("D"), groups * 64, groups * 128)
    } else if file == "flash_attn_sm90_tma.cu" {
        let consumers = number("C");
        // Rows of whole 64-value panels (head dims 80 and 96 padded to 128).
        let (stages, panels) = (number("STAGES"), (number("D") + 63) / 64);
        let family = match args.get("PERSISTENT").map(String::as_str) {
            Some("true") => "WgmmaTmaPersistent",
            _ => "WgmmaTma",
        };
        (family, stages, panels * 64, consumers * 64, (consumers + 1) * 128)
    } else {
        let warps = constant("WARPS");
        ("MmaSync", 2, number("LD"), warps * 16 * number("MT"), warps * 32)
    };
    format!(
        "    FlashKernel {{ name: {name:?}, bf16: {}, head_dim: {}, row_stride: {row_stride}, block_m: {block_m}, block_n: {}, threads: {threads}, stages: {stages}, family: KernelFamily::{family} }},\n",
        args.get("BF16").map(String::as_str) == Some("true"),
        number("D"),
        number("BN"),
    )
}

struct Kernel {
    name: String,
    params: Vec<Param>,
    /// The macro's name and its arguments by its parameter names, for a kernel a macro
    /// declares.
    macro_name: String,
    macro_args: Option<HashMap<String, String>>,
}

struct Param {
    base: &'static str,
    pointer: bool,
    constant: bool,
}

impl Param {
    fn parse(text: &str) -> Result<Param, String> {
        let text = text.trim();
        let pointer = text.contains('*');
        let mut words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '*')
            .filter(|w| !w.is_empty())
            .collect();
        words.pop(); // the parameter's name
        let constant = words.first() == Some(&"const");
        let base = match words
            .iter()
            .filter(|w| !matches!(**w, "const" | "__restrict__" | "__grid_constant__"))
            .copied()
            .collect::<Vec<_>>()[..]
        {
            ["half_bits"] => "Half",
            ["float"] => "F32",
            ["unsigned", "char"] => "U8",
            ["int"] => "I32",
            ["i64"] => "I64",
            ["TensorMap"] => "TensorMap",
            _ => {
                return Err(format!(
                    "parameter `{text}`: a type the launch table does not know"
                ))
            }
        };
        Ok(Param {
            base,
            pointer,
            constant,
        })
    }

    fn rust(&self) -> String {
        match (self.pointer, self.constant) {
            (true, true) => format!("Param::In(Elem::{})", self.base),
            (true, false) => format!("Param::Out(Elem::{})", self.base),
            (false, _) => format!("Param::Value(Elem::{})", self.base),
        }
    }
}

struct Parsed {
    kernels: Vec<Kernel>,
    constants: HashMap<String, i64>,
}

/// The kernels a file declares (`extern "C" __global__ void NAME(...)`, directly or through
/// a macro invoked at top level) and its `constexpr int NAME = VALUE;` constants.
fn parse(source: &str) -> Result<Parsed, String> {
    let text = strip_comments(source).replace("\\\n", " ");
    let mut kernels = Vec::new();
    let mut macros: HashMap<String, (Vec<String>, String)> = HashMap::new();
    let mut constants = HashMap::new();
    let mut plain = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("#define ") {
            if rest.contains("__global__") {
                let open = rest.find('(').ok_or("a kernel macro without parameters")?;
                let close = rest.find(')').ok_or("a kernel macro without parameters")?;
                let params = rest[open + 1..close]
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .collect();
                macros.insert(rest[..open].to_string(), (params, rest[close + 1..].to_string()));
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("constexpr int ") {
            if let Some((name, value)) = rest.trim_end_matches(';').split_once('=') {
                if let Ok(v) = value.trim().parse() {
                    constants.insert(name.trim().to_string(), v);
                }
            }
        }
        let invoked = macros.iter().find(|(name, _)| t.starts_with(&format!("{name}(")));
        if let Some((name, (params, body))) = invoked {
            let args: Vec<String> = t[name.len() + 1..t.rfind(')').ok_or("an unclosed macro call")?]
                .split(',')
                .map(|a| a.trim().to_string())
                .collect();
            if args.len() != params.len() {
                return Err(format!(
                    "{name}: {} arguments for {} parameters",
                    args.len(),
                    params.len()
                ));
            }
            let by_name: HashMap<String, String> = params.iter().cloned().zip(args).collect();
            let mut k = kernels_in(body)?
                .pop()
                .ok_or(format!("{name} declares no kernel"))?;
            k.name = by_name.get(&k.name).cloned().unwrap_or(k.name);
            k.macro_args = Some(by_name);
            k.macro_name = name.clone();
            kernels.push(k);
            continue;
        }
        plain.push_str(line);
        plain.push('\n');
    }
    kernels.extend(kernels_in(&plain)?);
    Ok(Parsed { kernels, constants })
}

fn kernels_in(text: &str) -> Result<Vec<Kernel>, String> {
    const DECL: &str = "extern \"C\" __global__ void";
    let mut kernels = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(DECL) {
        rest = rest[at + DECL.len()..].trim_start();
        if let Some(after) = rest.strip_prefix("__launch_bounds__") {
            // Its arguments may hold parentheses of their own: the one closing the first.
            let mut depth = 0;
            let close = after
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    c == ')' && depth == 0
                })
                .ok_or("unclosed __launch_bounds__")?
                .0;
            rest = after[close + 1..].trim_start();
        }
        let open = rest.find('(').ok_or("a kernel without parameters")?;
        let close = rest.find(')').ok_or("a kernel without a closing parenthesis")?;
        let params = rest[open + 1..close]
            .split(',')
            .map(Param::parse)
            .collect::<Result<Vec<_>, _>>()?;
        kernels.push(Kernel {
            name: rest[..open].trim().to_string(),
            params,
            macro_name: String::new(),
            macro_args: None,
        });
        rest = &rest[close..];
    }
    Ok(kernels)
}

fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}
