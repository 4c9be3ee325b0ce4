//! Build script. The CUDA backend will embed kernels/*.cu here (compiled at run time by NVRTC);
//! until then it only keeps Cargo from re-running it on every change.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
