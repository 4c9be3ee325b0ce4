//! Inputs for checking and timing backends: deterministic, fresh and non-zero (a kernel that
//! writes nothing, or reads the wrong rows, cannot pass on them as it could on zeros).

/// Deterministic inputs in [−2, 2) (xorshift): fresh, non-zero data for kernels and tests.
pub fn random_inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}
