//! Deterministic randomness and math: the same numbers on every machine, compiler and
//! thread count. Randomness is a hash of (seed, coordinates), never a shared stream, so
//! any tile can be rendered alone; transcendental functions are our own polynomials
//! (platform libm results may differ in the last bit, and a last bit can change a pixel).

/// SplitMix64's finaliser: a good 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a seed and up to three integer coordinates.
pub fn hash(seed: u64, a: i64, b: i64, c: i64) -> u64 {
    let mut h = mix(seed ^ 0x9E37_79B9_7F4A_7C15);
    h = mix(h ^ (a as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    h = mix(h ^ (b as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25));
    mix(h ^ (c as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
}

/// A cheaper hash of a seed and two coordinates (one mixing round), for per-pixel noise.
#[inline]
pub fn hash2(seed: u64, a: i64, b: i64) -> u64 {
    mix(seed
        ^ (a as u64).wrapping_mul(0xA24B_AED4_963E_E407)
        ^ (b as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25))
}

/// Uniform in [0, 1) from a hash.
pub fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// A sequential generator for planning a scene (one per slide, used in a fixed order).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ 0xD1B5_4A32_D192_ED03))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    /// Uniform integer in [lo, hi].
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.range(0.0, 1.0) < p
    }
    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.int(0, i as i64) as usize);
        }
    }
    /// Approximately normal (sum of four uniforms), mean 0, standard deviation 1.
    pub fn normal(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.range(-1.0, 1.0)).sum();
        s * (3.0f64 / 4.0).sqrt()
    }
}

pub const PI: f64 = std::f64::consts::PI;

/// sin(x) to ~1e-12 with basic arithmetic only.
pub fn sin(x: f64) -> f64 {
    // Reduce to [-pi, pi], then to [-pi/2, pi/2] by symmetry.
    let two_pi = 2.0 * PI;
    let mut r = x - two_pi * (x / two_pi).round_ties_even();
    if r > PI / 2.0 {
        r = PI - r;
    } else if r < -PI / 2.0 {
        r = -PI - r;
    }
    let r2 = r * r;
    // Taylor series to x^17: error < 1e-12 on [-pi/2, pi/2].
    let mut term = r;
    let mut sum = r;
    for k in 1..9 {
        term *= -r2 / ((2 * k) as f64 * (2 * k + 1) as f64);
        sum += term;
    }
    sum
}

pub fn cos(x: f64) -> f64 {
    sin(x + PI / 2.0)
}

/// exp(x) with basic arithmetic only (relative error ~1e-12 for |x| < 700).
pub fn exp(x: f64) -> f64 {
    if x < -700.0 {
        return 0.0;
    }
    // exp(x) = 2^k * exp(r), r in [-ln2/2, ln2/2].
    let ln2 = std::f64::consts::LN_2;
    let k = (x / ln2).round_ties_even();
    let r = x - k * ln2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..16 {
        term *= r / i as f64;
        sum += term;
    }
    sum * f64::powi(2.0, k as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn math_matches_the_library_closely() {
        for i in -200..200 {
            let x = i as f64 * 0.173;
            assert!((sin(x) - x.sin()).abs() < 1e-11, "sin {x}");
            assert!((cos(x) - x.cos()).abs() < 1e-11, "cos {x}");
            let e = (x / 20.0).exp();
            assert!((exp(x / 20.0) - e).abs() / e < 1e-12, "exp {x}");
        }
    }

    #[test]
    fn hashes_spread() {
        let mean: f32 = (0..10000).map(|i| unit(hash(7, i, 0, 0))).sum::<f32>() / 10000.0;
        assert!((mean - 0.5).abs() < 0.02);
    }
}
