//! Every CUDA kernel compiles with NVRTC for Ampere (sm_80) and Hopper (sm_90a), without a
//! GPU, spilling at most a few bytes of registers (the d = 128 attention kernel, at 255
//! registers, spills 4–8 bytes outside its inner loop; a real spill in the loop is far
//! more), and with no wgmma product serialised by ptxas. Needs libnvrtc on the library path
//! (CI installs it from PyPI); says it skipped otherwise.

use flashslide::backend::cuda::nvrtc;

#[test]
fn every_kernel_compiles_for_sm80_and_sm90a_without_spills() {
    if !nvrtc::present() {
        // CI installs NVRTC and sets this, so a missing library cannot pass there silently.
        assert!(
            std::env::var_os("FLASHSLIDE_REQUIRE_NVRTC").is_none(),
            "FLASHSLIDE_REQUIRE_NVRTC is set but libnvrtc is not on the library path"
        );
        eprintln!("skipped: libnvrtc not found (pip install nvidia-cuda-nvrtc==13.0.*, add its lib/ to LD_LIBRARY_PATH)");
        return;
    }
    let (major, minor) = nvrtc::version().unwrap();
    eprintln!("NVRTC {major}.{minor}");
    let files: Vec<_> = nvrtc::kernel_files().collect();
    assert!(files.contains(&"flash_attn.cu") && files.contains(&"layers.cu"));
    for arch in ["sm_80", "sm_90a"] {
        for file in &files {
            let compiled = nvrtc::compile(file, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(compiled.cubin.len() > 1000, "{file} for {arch}: empty cubin");
            // ptxas -v: one "Used N registers" line per kernel, and its spills.
            for line in compiled
                .log
                .lines()
                .filter(|l| l.contains("registers") || l.contains("spill") || l.contains("entry function"))
            {
                eprintln!("{file} {arch}: {}", line.trim());
            }
            let worst_spill = compiled
                .log
                .lines()
                .filter_map(|l| {
                    l.split(" bytes spill stores")
                        .next()?
                        .rsplit(' ')
                        .next()?
                        .parse::<u32>()
                        .ok()
                })
                .max()
                .unwrap_or(0);
            assert!(
                worst_spill <= 16,
                "{file} spills {worst_spill} bytes of registers on {arch}:\n{}",
                compiled.log
            );
            // ptxas's C7510-C7520 notes: wgmma products serialised, or waits and fences it
            // injected around them; each costs the overlap the Hopper kernels are built on.
            let serialised: Vec<&str> = compiled
                .log
                .lines()
                .filter(|l| l.contains("(C75") && (l.contains("serialized") || l.contains("injected")))
                .collect();
            assert!(
                serialised.is_empty(),
                "{file} on {arch}: ptxas serialises wgmma:\n{}",
                serialised.join("\n")
            );
        }
    }
}
