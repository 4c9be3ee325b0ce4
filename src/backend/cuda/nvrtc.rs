//! The kernels (kernels/*.cu, embedded by build.rs) compiled by NVRTC to a cubin for one GPU
//! architecture. Needs only libnvrtc, not a GPU: CI compiles every kernel for sm_80 and
//! sm_90a this way. Compiled cubins are cached on disk, keyed by the sources, architecture,
//! NVRTC version and options (and, by the caller, the driver version).

use cudarc::nvrtc::sys;
use sha2::{Digest, Sha256};
use std::ffi::{c_char, c_int, CString};
use std::path::PathBuf;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));
}

/// (file name, source) of every kernel file and header: the embedded ones, each replaced by
/// the file of the same name in `$FLASHSLIDE_KERNELS` when that is set (kernel work on a GPU
/// machine without a Rust toolchain: edit, rerun, no rebuild; the cache key follows).
fn sources() -> &'static [(String, String)] {
    static SOURCES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    SOURCES.get_or_init(|| {
        let dir = std::env::var_os("FLASHSLIDE_KERNELS").map(PathBuf::from);
        embedded::SOURCES
            .iter()
            .map(|(name, source)| {
                let replaced = dir
                    .as_ref()
                    .and_then(|d| std::fs::read_to_string(d.join(name)).ok());
                (name.to_string(), replaced.unwrap_or_else(|| source.to_string()))
            })
            .collect()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("libnvrtc (CUDA's run-time compiler) was not found on the library path")]
    Missing,
    #[error("no kernel file named {0}")]
    Unknown(String),
    #[error("NVRTC: {0}")]
    Nvrtc(String),
    #[error("kernels/{file} does not compile for {arch}:\n{log}")]
    Failed { file: String, arch: String, log: String },
}

/// Whether libnvrtc can be loaded (cudarc panics on first use otherwise).
pub fn present() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's (major, minor) version.
pub fn version() -> Result<(i32, i32), CompileError> {
    if !present() {
        return Err(CompileError::Missing);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two out-parameters.
    check(unsafe { sys::nvrtcVersion(&mut major, &mut minor) })?;
    Ok((major, minor))
}

/// The kernel files (`.cu`), by name.
pub fn kernel_files() -> impl Iterator<Item = &'static str> {
    sources()
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.ends_with(".cu"))
}

/// What a compilation produced: the cubin, and NVRTC's log (register and spill report).
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub log: String,
}

/// Compiles kernel file `file` for `arch` (`sm_80`, `sm_90a`, ...).
pub fn compile(file: &str, arch: &str) -> Result<Compiled, CompileError> {
    if !present() {
        return Err(CompileError::Missing);
    }
    let source = &sources()
        .iter()
        .find(|(n, _)| n == file)
        .ok_or_else(|| CompileError::Unknown(file.to_string()))?
        .1;
    let c = |s: &str| CString::new(s).expect("no NUL in sources");
    let src = c(source);
    let name = c(file);
    let headers: Vec<(CString, CString)> = sources()
        .iter()
        .filter(|(n, _)| n.ends_with(".cuh"))
        .map(|(n, s)| (c(s), c(n)))
        .collect();
    let header_srcs: Vec<*const c_char> = headers.iter().map(|h| h.0.as_ptr()).collect();
    let header_names: Vec<*const c_char> = headers.iter().map(|h| h.1.as_ptr()).collect();
    let options: Vec<CString> = compile_options(arch).iter().map(|o| c(o)).collect();
    let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
    let mut prog = std::ptr::null_mut();
    // SAFETY: every pointer refers to a NUL-terminated string alive for the whole call.
    check(unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            src.as_ptr(),
            name.as_ptr(),
            headers.len() as c_int,
            header_srcs.as_ptr(),
            header_names.as_ptr(),
        )
    })?;
    // SAFETY: `prog` was created above and is destroyed once, below.
    unsafe {
        let compiled = sys::nvrtcCompileProgram(prog, option_ptrs.len() as c_int, option_ptrs.as_ptr());
        let log = program_log(prog);
        let out = if compiled == sys::nvrtcResult::NVRTC_SUCCESS {
            cubin(prog).map(|cubin| Compiled { cubin, log })
        } else {
            Err(CompileError::Failed {
                file: file.to_string(),
                arch: arch.to_string(),
                log,
            })
        };
        sys::nvrtcDestroyProgram(&mut prog);
        out
    }
}

fn compile_options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        "--ptxas-options=-v".into(),
    ]
}

/// `compile` through the on-disk cache (`$FLASHSLIDE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/flashslide`, else `~/.cache/flashslide`); `driver` is the CUDA driver's
/// version, part of the key. A cache that cannot be written is skipped, not an error.
pub fn compile_cached(file: &str, arch: &str, driver: i32) -> Result<Vec<u8>, CompileError> {
    let (major, minor) = version()?;
    let mut key = Sha256::new();
    for (name, source) in sources() {
        key.update(name.as_bytes());
        key.update(source.as_bytes());
    }
    key.update(
        format!(
            "{file} {arch} nvrtc {major}.{minor} driver {driver} {:?}",
            compile_options(arch)
        )
        .as_bytes(),
    );
    let key: String = key
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = cache_dir().map(|d| d.join(format!("{}-{arch}-{key}.cubin", file.trim_end_matches(".cu"))));
    if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
        return Ok(bytes);
    }
    let compiled = compile(file, arch)?;
    if let Some(path) = path {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = path
            .parent()
            .map(std::fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|_| std::fs::write(&tmp, &compiled.cubin))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(compiled.cubin)
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FLASHSLIDE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("flashslide"))
}

fn check(r: sys::nvrtcResult) -> Result<(), CompileError> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(CompileError::Nvrtc(format!("{r:?}")))
    }
}

/// # Safety
/// `prog` must be a live program.
unsafe fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    if sys::nvrtcGetProgramLogSize(prog, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char);
    String::from_utf8_lossy(&buf[..size - 1]).into_owned()
}

/// # Safety
/// `prog` must be a compiled program.
unsafe fn cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, CompileError> {
    let mut size = 0usize;
    check(sys::nvrtcGetCUBINSize(prog, &mut size))?;
    let mut buf = vec![0u8; size];
    check(sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char))?;
    Ok(buf)
}
