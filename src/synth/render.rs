//! Rendering synthetic H&E, tile by tile. Each tile is computed alone from the scene and the
//! seed: stain amounts (haematoxylin for chromatin, eosin for cytoplasm, stroma and red
//! cells) are laid down as a background from the region map plus one nucleus per occupied
//! cell of a per-cell-type lattice, optionally blurred (focus), and turned into RGB by
//! Beer–Lambert: I = I0 · exp(−(H·h + E·e)) with Ruifrok & Johnston's optical densities.
//!
//! What separates tumour from its benign mimics is cellular, as in real nodes: carcinoma
//! nuclei are 2–3× a lymphocyte's diameter, irregular, vesicular (dark rim, pale core,
//! coarse chromatin) with prominent nucleoli, and crowded; germinal-centre cells are larger
//! and paler than lymphocytes but round and orderly; histiocytes are pale and oval with
//! abundant cytoplasm. Their densities and stain amounts are set so that, averaged over
//! 8 µm, they look alike.

use super::scene::{value_noise, value_noise2, Region, Scene};
use crate::util::rng::{exp, hash, hash2, mix, unit, Rng};

/// A slide's staining and scanning: stain vectors, amounts, brightness, focus, noise.
#[derive(Clone, Debug)]
pub struct Look {
    od_h: [f32; 3],
    od_e: [f32; 3],
    h_gain: f32,
    e_gain: f32,
    white: [f32; 3],
    /// 0 (sharp) to 1 (a 3-tap blur of weight 0.25 on each side).
    pub blur: f32,
    noise: f32,
}

fn normalise(v: [f64; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [(v[0] / n) as f32, (v[1] / n) as f32, (v[2] / n) as f32]
}

impl Look {
    pub fn draw(rng: &mut Rng) -> Look {
        // Ruifrok & Johnston's vectors, each channel jittered: hue and saturation vary.
        let jitter = |v: [f64; 3], rng: &mut Rng| {
            normalise([
                v[0] * rng.range(0.85, 1.15),
                v[1] * rng.range(0.9, 1.1),
                v[2] * rng.range(0.8, 1.2),
            ])
        };
        let od_h = jitter([0.650, 0.704, 0.286], rng);
        let od_e = jitter([0.072, 0.990, 0.105], rng);
        let b = rng.range(236.0, 250.0);
        Look {
            od_h,
            od_e,
            h_gain: rng.range(0.8, 1.2) as f32,
            e_gain: rng.range(0.75, 1.25) as f32,
            white: [
                (b + rng.range(-3.0, 3.0)) as f32,
                (b + rng.range(-3.0, 3.0)) as f32,
                (b + rng.range(-2.0, 4.0)).min(255.0) as f32,
            ],
            blur: if rng.chance(0.4) {
                0.0
            } else {
                rng.range(0.3, 1.0) as f32
            },
            noise: rng.range(1.0, 3.0) as f32,
        }
    }
}

/// Optical density to 8-bit intensity, per channel, in steps of 1/512.
const LUT_STEPS: f32 = 512.0;
const LUT_LEN: usize = 4096;

/// Kinds of nucleus (and red cell), each on its own lattice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Lymphocyte,
    GerminalCentre,
    Histiocyte,
    Tumour,
    Spindle,
    Erythrocyte,
}

const CELLS: [Cell; 6] = [
    Cell::Lymphocyte,
    Cell::GerminalCentre,
    Cell::Histiocyte,
    Cell::Tumour,
    Cell::Spindle,
    Cell::Erythrocyte,
];

impl Cell {
    /// Lattice spacing in µm: at most one cell of this kind per lattice square.
    fn spacing_um(self) -> f64 {
        match self {
            Cell::Lymphocyte => 6.3,
            Cell::GerminalCentre => 9.5,
            Cell::Histiocyte => 12.5,
            Cell::Tumour => 13.5,
            Cell::Spindle => 16.0,
            Cell::Erythrocyte => 7.0,
        }
    }

    /// Largest extent from its centre in µm (for finding the cells that reach a tile).
    fn reach_um(self) -> f64 {
        match self {
            Cell::Tumour => 14.0,
            Cell::Spindle => 11.0,
            _ => 9.0,
        }
    }

    /// Chance that a lattice square in `region` holds this cell.
    fn probability(self, region: Region) -> f32 {
        use Region::*;
        match (self, region) {
            (Cell::Lymphocyte, Cortex) => 0.86,
            (Cell::Lymphocyte, Mantle) => 0.97,
            (Cell::Lymphocyte, Cord) => 0.62,
            (Cell::Lymphocyte, Sinus) => 0.07,
            (Cell::Lymphocyte, Germinal) => 0.06,
            (Cell::Lymphocyte, Histiocytes) => 0.12,
            (Cell::Lymphocyte, Tumour) => 0.1,
            (Cell::Lymphocyte, Capsule | VesselLumen) => 0.02,
            (Cell::GerminalCentre, Germinal) => 0.88,
            (Cell::Histiocyte, Histiocytes) => 0.9,
            (Cell::Histiocyte, Sinus) => 0.1,
            (Cell::Histiocyte, Germinal) => 0.07,
            (Cell::Histiocyte, Cord) => 0.04,
            (Cell::Tumour, Tumour) => 0.68,
            (Cell::Spindle, Capsule) => 0.55,
            (Cell::Spindle, VesselWall) => 0.8,
            (Cell::Spindle, Sinus | Cord) => 0.03,
            (Cell::Spindle, Fat) => 0.02,
            (Cell::Erythrocyte, VesselLumen) => 0.7,
            (Cell::Erythrocyte, Sinus) => 0.015,
            _ => 0.0,
        }
    }
}

/// A second variation in [0, 1), nearly independent of the first, from the same byte.
fn second(v: f32) -> f32 {
    (v * 97.0).fract()
}

/// Background stain amounts (eosin, haematoxylin) of a region, `v` its structure's variation:
/// cytoplasm and stroma vary widely between structures, for tumour and mimics alike.
fn background(region: Region, v: f32) -> (f32, f32) {
    use Region::*;
    match region {
        Glass => (0.0, 0.0),
        Capsule => (0.62, 0.03),
        Sinus => (0.13, 0.03),
        Cortex | Mantle => (0.17, 0.07),
        Germinal => (0.12 + 0.3 * second(v), 0.06),
        Cord => (0.2, 0.06),
        Fat => (0.015, 0.0),
        VesselWall => (0.7, 0.04),
        VesselLumen => (0.14, 0.0),
        Histiocytes => (0.18 + 0.3 * second(v), 0.05),
        Tumour => (0.2 + 0.3 * second(v), 0.05),
    }
}

/// One nucleus (or red cell) in level-0 pixels.
struct Nucleus {
    x: f32,
    y: f32,
    /// Semi-axes (pixels) and orientation (unit vector of the long axis).
    a: f32,
    b: f32,
    cos: f32,
    sin: f32,
    /// Outline harmonics: radius × (1 + c2 cos2θ + s2 sin2θ + c3 cos3θ + s3 sin3θ).
    harm: [f32; 4],
    core: f32,
    rim: f32,
    /// Rim thickness as a fraction of the radius.
    rim_width: f32,
    /// Chromatin granularity: amplitude and grain size (pixels).
    texture: f32,
    grain: f32,
    /// Nucleoli: offset in units of the semi-axes, radius (pixels), haematoxylin.
    nucleoli: [(f32, f32, f32, f32); 3],
    nucleolus_count: usize,
    red_cell: bool,
    id: u64,
}

/// Stain amounts over a window of the slide whose top-left pixel is level-0 (`ox`, `oy`).
struct StainField {
    ox: i64,
    oy: i64,
    w: usize,
    h: usize,
    eosin: Vec<f32>,
    haem: Vec<f32>,
}

impl StainField {
    fn new(ox: i64, oy: i64, w: usize, h: usize) -> StainField {
        StainField {
            ox,
            oy,
            w,
            h,
            eosin: vec![0.0; w * h],
            haem: vec![0.0; w * h],
        }
    }
}

pub struct Renderer<'a> {
    scene: &'a Scene,
    look: Look,
    seed: u64,
    px_per_um: f64,
    lut: [[u8; LUT_LEN]; 3],
    /// Pre-drawn lymphocytes (the most numerous cells), by size and quarter-pixel offset.
    lymphocytes: Vec<Sprite>,
}

/// A nucleus drawn once into its own small field: haematoxylin for a core stain of 1, and
/// the factor it leaves on eosin. Stamped with a per-cell stain scale.
struct Sprite {
    size: usize,
    /// Where the nucleus centre falls, from the sprite's top-left pixel.
    centre: (f32, f32),
    h: Vec<f32>,
    e: Vec<f32>,
}

const SPRITE_SIZES: usize = 6;
const SPRITE_OFFSETS: usize = 4;

impl<'a> Renderer<'a> {
    pub fn new(scene: &'a Scene, look: Look, seed: u64) -> Renderer<'a> {
        let lut = std::array::from_fn(|c| {
            std::array::from_fn(|i| {
                (look.white[c] as f64 * exp(-(i as f64) / LUT_STEPS as f64))
                    .round()
                    .clamp(0.0, 255.0) as u8
            })
        });
        let px_per_um = 1.0 / scene.mpp;
        let lymphocytes = lymphocyte_sprites(px_per_um, seed);
        Renderer {
            scene,
            look,
            seed,
            px_per_um,
            lut,
            lymphocytes,
        }
    }

    /// Renders `rows` rows of the full slide width starting at `y0`, as RGB.
    pub fn render_band(&self, y0: u64, rows: u32) -> Vec<u8> {
        use rayon::prelude::*;
        const CHUNK: u64 = 256;
        let width = self.scene.width;
        let chunks: Vec<(u64, Vec<u8>)> = (0..width.div_ceil(CHUNK))
            .into_par_iter()
            .map(|i| {
                let x0 = i * CHUNK;
                let w = CHUNK.min(width - x0) as usize;
                (x0, self.render_tile(x0 as i64, y0 as i64, w, rows as usize))
            })
            .collect();
        let mut band = vec![0u8; width as usize * rows as usize * 3];
        for (x0, tile) in chunks {
            let w = tile.len() / 3 / rows as usize;
            for r in 0..rows as usize {
                let dst = (r * width as usize + x0 as usize) * 3;
                band[dst..dst + w * 3].copy_from_slice(&tile[r * w * 3..(r + 1) * w * 3]);
            }
        }
        band
    }

    /// Renders the `w` × `h` pixels at (`x0`, `y0`) as RGB.
    pub fn render_tile(&self, x0: i64, y0: i64, w: usize, h: usize) -> Vec<u8> {
        let margin = if self.look.blur > 0.0 { 1 } else { 0 };
        let mut field = StainField::new(
            x0 - margin as i64,
            y0 - margin as i64,
            w + 2 * margin,
            h + 2 * margin,
        );
        let has_fat = self.paint_background(&mut field);
        if has_fat {
            self.paint_fat(&mut field);
        }
        for cell in CELLS {
            self.paint_cells(cell, &mut field);
        }
        if margin > 0 {
            blur3(&mut field.eosin, field.w, field.h, 0.25 * self.look.blur);
            blur3(&mut field.haem, field.w, field.h, 0.25 * self.look.blur);
        }
        let mut rgb = vec![0u8; w * h * 3];
        let (hg, eg) = (self.look.h_gain, self.look.e_gain);
        for y in 0..h {
            for x in 0..w {
                let i = (y + margin) * field.w + x + margin;
                let (hv, ev) = (field.haem[i] * hg, field.eosin[i] * eg);
                let n = hash2(self.seed ^ 0xA0A0, x0 + x as i64, y0 + y as i64);
                for c in 0..3 {
                    let od = hv * self.look.od_h[c] + ev * self.look.od_e[c];
                    let idx = ((od * LUT_STEPS) as usize).min(LUT_LEN - 1);
                    let noise = (((n >> (c * 16)) & 0xFFFF) as f32 / 65535.0 - 0.5) * 2.0 * self.look.noise;
                    rgb[(y * w + x) * 3 + c] =
                        (self.lut[c][idx] as f32 + noise + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
        rgb
    }

    /// Region background, sampled every 4 pixels with texture and interpolated bilinearly.
    /// Returns whether any of it is fat.
    fn paint_background(&self, f: &mut StainField) -> bool {
        let (ox, oy, fw, fh) = (f.ox, f.oy, f.w, f.h);
        let mut has_fat = false;
        const STEP: usize = 4;
        let (gw, gh) = (fw / STEP + 2, fh / STEP + 2);
        let mut ge = vec![0f32; gw * gh];
        let mut gh_ = vec![0f32; gw * gh];
        let fine = 7.0 * self.px_per_um; // fibre and cytoplasm texture scale
        let coarse = 60.0 * self.px_per_um;
        let (warp, wscale) = (2.5 * self.scene.map.cell, 12.0 * self.px_per_um);
        for gy in 0..gh {
            for gx in 0..gw {
                let (x, y) = ((ox + (gx * STEP) as i64) as f64, (oy + (gy * STEP) as i64) as f64);
                // Warp the lookup by about a map cell so region edges are organic, not stepped.
                let (nx, ny) = value_noise2(self.seed ^ 0x3A59, x / wscale, y / wscale);
                let (wx, wy) = (warp * (nx - 0.5) as f64, warp * (ny - 0.5) as f64);
                let (region, v) = self.scene.map.at(x + wx, y + wy);
                has_fat |= region == Region::Fat;
                let (be, bh) = background(region, v);
                let t = 0.7
                    + 0.45 * value_noise(self.seed ^ 0xF1BE, x / fine, y / fine)
                    + 0.25 * (value_noise(self.seed ^ 0xC0A5, x / coarse, y / coarse) - 0.5);
                ge[gy * gw + gx] = be * t;
                gh_[gy * gw + gx] = bh * t;
            }
        }
        for y in 0..fh {
            let (gy, fy) = (y / STEP, (y % STEP) as f32 / STEP as f32);
            for x in 0..fw {
                let (gx, fx) = (x / STEP, (x % STEP) as f32 / STEP as f32);
                let bil = |g: &[f32]| {
                    let (a, b) = (g[gy * gw + gx], g[gy * gw + gx + 1]);
                    let (c, d) = (g[(gy + 1) * gw + gx], g[(gy + 1) * gw + gx + 1]);
                    let top = a + (b - a) * fx;
                    top + (c + (d - c) * fx - top) * fy
                };
                f.eosin[y * fw + x] = bil(&ge);
                f.haem[y * fw + x] = bil(&gh_);
            }
        }
        has_fat
    }

    /// Adipocytes: large empty cells whose thin membranes are the edges of a jittered
    /// Voronoi diagram (where the nearest and second-nearest centres are about equidistant).
    fn paint_fat(&self, f: &mut StainField) {
        let (ox, oy, fw, fh) = (f.ox, f.oy, f.w, f.h);
        let spacing = 70.0 * self.px_per_um;
        let membrane = 1.2 * self.px_per_um;
        for y in 0..fh {
            for x in 0..fw {
                let (px, py) = ((ox + x as i64) as f64, (oy + y as i64) as f64);
                if self.scene.map.at(px, py).0 != Region::Fat {
                    continue;
                }
                let (cx, cy) = ((px / spacing).floor() as i64, (py / spacing).floor() as i64);
                let (mut d1, mut d2) = (f64::MAX, f64::MAX);
                for j in cy - 1..=cy + 1 {
                    for i in cx - 1..=cx + 1 {
                        let hsh = hash(self.seed ^ 0xFA7, i, j, 0);
                        let qx = (i as f64 + 0.15 + 0.7 * unit(hsh) as f64) * spacing;
                        let qy = (j as f64 + 0.15 + 0.7 * unit(mix(hsh)) as f64) * spacing;
                        let d = (qx - px) * (qx - px) + (qy - py) * (qy - py);
                        if d < d1 {
                            d2 = d1;
                            d1 = d;
                        } else if d < d2 {
                            d2 = d;
                        }
                    }
                }
                let gap = ((d2.sqrt() - d1.sqrt()) / membrane) as f32;
                if gap < 1.0 {
                    f.eosin[y * fw + x] += 0.55 * (1.0 - gap);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn paint_cells(&self, cell: Cell, f: &mut StainField) {
        let (ox, oy, fw, fh) = (f.ox, f.oy, f.w, f.h);
        let s = cell.spacing_um() * self.px_per_um;
        let reach = cell.reach_um() * self.px_per_um;
        let i0 = ((ox as f64 - reach) / s).floor() as i64;
        let i1 = (((ox + fw as i64) as f64 + reach) / s).floor() as i64;
        let j0 = ((oy as f64 - reach) / s).floor() as i64;
        let j1 = (((oy + fh as i64) as f64 + reach) / s).floor() as i64;
        let kind = cell as i64;
        let patch = 30.0 * self.px_per_um;
        for j in j0..=j1 {
            for i in i0..=i1 {
                let h0 = hash(self.seed, kind, i, j);
                let x = (i as f64 + 0.1 + 0.8 * unit(h0) as f64) * s;
                let y = (j as f64 + 0.1 + 0.8 * unit(mix(h0)) as f64) * s;
                let (region, v) = self.scene.map.at(x, y);
                let mut p = cell.probability(region);
                if p == 0.0 {
                    continue;
                }
                if matches!(cell, Cell::Tumour | Cell::Histiocyte | Cell::GerminalCentre) {
                    // Cellularity varies between structures and, on a 30 µm scale, within them.
                    let patchy = value_noise(self.seed ^ 0xCE11, x / patch, y / patch);
                    let spread = if cell == Cell::Tumour { 1.6 } else { 0.6 };
                    p *= (0.6 + 0.8 * v) * (1.0 + spread * (patchy - 0.5));
                }
                if unit(mix(h0 ^ 0x51)) >= p {
                    continue;
                }
                if cell == Cell::Lymphocyte {
                    self.stamp_lymphocyte(x, y, mix(h0 ^ 0x7777), f);
                    continue;
                }
                let mut n = self.nucleus(cell, x, y, v, mix(h0 ^ 0x7777));
                if matches!(cell, Cell::Tumour | Cell::Histiocyte | Cell::GerminalCentre) {
                    // Staining intensity varies between structures too.
                    let k = 0.75 + 0.5 * v;
                    n.core *= k;
                    n.rim *= k;
                }
                splat(&n, f);
            }
        }
    }

    /// Adds a pre-drawn lymphocyte at (`x`, `y`): its hash picks the size and stain amount,
    /// the sub-pixel part of its position the sprite's offset.
    fn stamp_lymphocyte(&self, x: f64, y: f64, h: u64, f: &mut StainField) {
        let (ox, oy, fw, fh) = (f.ox, f.oy, f.w, f.h);
        let size_bucket = (h % SPRITE_SIZES as u64) as usize;
        let (fx, fy) = (x - x.floor(), y - y.floor());
        let (qx, qy) = (
            (fx * SPRITE_OFFSETS as f64) as usize,
            (fy * SPRITE_OFFSETS as f64) as usize,
        );
        let sprite = &self.lymphocytes[(size_bucket * SPRITE_OFFSETS + qy) * SPRITE_OFFSETS + qx];
        let stain = 1.55 + 0.45 * unit(mix(h));
        // Top-left of the sprite in field pixels.
        let sx = x.floor() as i64 - sprite.centre.0.floor() as i64 - ox;
        let sy = y.floor() as i64 - sprite.centre.1.floor() as i64 - oy;
        for r in 0..sprite.size as i64 {
            let fy = sy + r;
            if fy < 0 || fy >= fh as i64 {
                continue;
            }
            for c in 0..sprite.size as i64 {
                let fx = sx + c;
                if fx < 0 || fx >= fw as i64 {
                    continue;
                }
                let (i, k) = (
                    fy as usize * fw + fx as usize,
                    (r * sprite.size as i64 + c) as usize,
                );
                f.haem[i] += stain * sprite.h[k];
                f.eosin[i] *= sprite.e[k];
            }
        }
    }

    /// Draws one cell's nucleus from its hash: size, shape and chromatin by cell kind.
    fn nucleus(&self, cell: Cell, x: f64, y: f64, v: f32, h: u64) -> Nucleus {
        let mut r = Rng::new(h);
        let um = self.px_per_um as f32;
        let mut f = |lo: f64, hi: f64| r.range(lo, hi) as f32;
        let (ux, uy) = (f(-1.0, 1.0), f(-1.0, 1.0));
        let norm = (ux * ux + uy * uy).sqrt().max(1e-3);
        let mut n = Nucleus {
            x: x as f32,
            y: y as f32,
            a: 0.0,
            b: 0.0,
            cos: ux / norm,
            sin: uy / norm,
            harm: [0.0; 4],
            core: 0.0,
            rim: 0.0,
            rim_width: 0.1,
            texture: 0.1,
            grain: 0.8 * um,
            nucleoli: [(0.0, 0.0, 0.0, 0.0); 3],
            nucleolus_count: 0,
            red_cell: false,
            id: h,
        };
        let harmonics = |amp: f32, f: &mut dyn FnMut(f64, f64) -> f32| {
            [
                f(-1.0, 1.0) * amp,
                f(-1.0, 1.0) * amp,
                f(-1.0, 1.0) * amp * 0.7,
                f(-1.0, 1.0) * amp * 0.7,
            ]
        };
        match cell {
            Cell::Lymphocyte => unreachable!("lymphocytes are stamped from sprites"),
            Cell::GerminalCentre => {
                if f(0.0, 1.0) < 0.3 {
                    // Centrocyte: smaller, cleaved, darker.
                    let rad = f(3.6, 4.3) * um;
                    n.a = rad;
                    n.b = rad * f(0.75, 0.95);
                    n.harm = harmonics(0.16, &mut f);
                    n.core = f(0.95, 1.2);
                    n.rim = n.core * 1.15;
                    n.texture = 0.25;
                } else {
                    // Centroblast: large, round, pale, small nucleoli against the membrane.
                    let rad = f(4.3, 5.4) * um;
                    n.a = rad;
                    n.b = rad * f(0.85, 1.0);
                    n.harm = harmonics(0.05, &mut f);
                    n.core = f(0.78, 1.02);
                    n.rim = f(1.25, 1.5);
                    n.rim_width = 0.12;
                    n.texture = 0.3;
                    n.nucleolus_count = 1 + (f(0.0, 1.0) < 0.5) as usize;
                    for k in 0..n.nucleolus_count {
                        let t = f(-1.0, 1.0);
                        n.nucleoli[k] = (
                            0.75 * t,
                            0.75 * (1.0 - t * t).sqrt(),
                            f(0.45, 0.7) * um,
                            f(0.8, 1.1),
                        );
                    }
                }
            }
            Cell::Histiocyte => {
                let rad = f(4.6, 6.4) * um;
                n.a = rad;
                n.b = rad * f(0.55, 0.78);
                n.harm = harmonics(0.1, &mut f);
                n.core = f(0.55, 0.8);
                n.rim = f(0.95, 1.2);
                n.rim_width = 0.1;
                n.texture = 0.15;
                if f(0.0, 1.0) < 0.35 {
                    n.nucleolus_count = 1;
                    n.nucleoli[0] = (f(-0.2, 0.2), f(-0.2, 0.2), f(0.4, 0.6) * um, 0.7);
                }
            }
            Cell::Tumour => {
                // Per-deposit nuclear size, then pleomorphism within it.
                let rad = f(6.2, 9.6) * (0.88 + 0.24 * v) * um;
                n.a = rad;
                n.b = rad * f(0.68, 0.98);
                n.harm = harmonics(0.2, &mut f);
                n.core = f(0.36, 0.58);
                n.rim = f(1.35, 1.75);
                n.rim_width = f(0.1, 0.16);
                n.texture = 0.55;
                n.grain = f(0.8, 1.3) * um;
                n.nucleolus_count = 1 + (f(0.0, 1.0) * 2.4) as usize;
                for k in 0..n.nucleolus_count {
                    n.nucleoli[k] = (f(-0.45, 0.45), f(-0.45, 0.45), f(0.8, 1.5) * um, f(1.3, 1.8));
                }
            }
            Cell::Spindle => {
                n.a = f(6.0, 9.0) * um;
                n.b = f(1.1, 1.7) * um;
                n.harm = harmonics(0.05, &mut f);
                n.core = f(1.1, 1.5);
                n.rim = n.core;
                n.texture = 0.15;
            }
            Cell::Erythrocyte => {
                let rad = f(3.3, 3.8) * um;
                n.a = rad;
                n.b = rad * f(0.85, 1.0);
                n.core = f(0.75, 1.0);
                n.red_cell = true;
            }
        }
        n
    }
}

/// Lymphocytes drawn once per size bucket and quarter-pixel offset, with `splat` itself.
fn lymphocyte_sprites(px_per_um: f64, seed: u64) -> Vec<Sprite> {
    let um = px_per_um as f32;
    let mut sprites = Vec::with_capacity(SPRITE_SIZES * SPRITE_OFFSETS * SPRITE_OFFSETS);
    for k in 0..SPRITE_SIZES {
        let radius = (3.2 + 0.7 * (k as f32 + 0.5) / SPRITE_SIZES as f32) * um;
        let size = (2.0 * radius * 1.1 + 4.0).ceil() as usize;
        for qy in 0..SPRITE_OFFSETS {
            for qx in 0..SPRITE_OFFSETS {
                let mut r = Rng::new(hash(seed ^ 0x1F, k as i64, qx as i64, qy as i64));
                let mut f = |lo: f64, hi: f64| r.range(lo, hi) as f32;
                let offset = |q: usize| (size / 2) as f32 + (q as f32 + 0.5) / SPRITE_OFFSETS as f32;
                let centre = (offset(qx), offset(qy));
                let b = radius * f(0.88, 1.0);
                let harm = [f(-0.04, 0.04), f(-0.04, 0.04), f(-0.03, 0.03), f(-0.03, 0.03)];
                let n = Nucleus {
                    x: centre.0,
                    y: centre.1,
                    a: radius,
                    b,
                    cos: 1.0,
                    sin: 0.0,
                    harm,
                    core: 1.0,
                    rim: 1.1,
                    rim_width: 0.1,
                    texture: 0.18,
                    grain: 0.8 * um,
                    nucleoli: [(0.0, 0.0, 0.0, 0.0); 3],
                    nucleolus_count: 0,
                    red_cell: false,
                    id: r.next_u64(),
                };
                let mut field = StainField::new(0, 0, size, size);
                field.eosin.fill(1.0);
                splat(&n, &mut field);
                sprites.push(Sprite {
                    size,
                    centre,
                    h: field.haem,
                    e: field.eosin,
                });
            }
        }
    }
    sprites
}

/// Adds one nucleus's stain to a field.
fn splat(n: &Nucleus, f: &mut StainField) {
    let (ox, oy, fw, fh) = (f.ox, f.oy, f.w, f.h);
    let wobble = n.harm.iter().map(|v| v.abs()).sum::<f32>();
    let extent = n.a * (1.0 + wobble) + 1.5;
    let (cx, cy) = (n.x - ox as f32, n.y - oy as f32);
    let xa = ((cx - extent).floor().max(0.0)) as usize;
    let ya = ((cy - extent).floor().max(0.0)) as usize;
    let xb = ((cx + extent).ceil().min(fw as f32 - 1.0)).max(-1.0) as i64;
    let yb = ((cy + extent).ceil().min(fh as f32 - 1.0)).max(-1.0) as i64;
    for py in ya as i64..=yb {
        for px in xa as i64..=xb {
            let (dx, dy) = (px as f32 + 0.5 - cx, py as f32 + 0.5 - cy);
            // Into the nucleus's own frame, scaled so its outline is the unit circle.
            let (u, v) = ((dx * n.cos + dy * n.sin) / n.a, (-dx * n.sin + dy * n.cos) / n.b);
            let d2 = u * u + v * v;
            let limit = 1.0 + wobble;
            if d2 >= limit * limit {
                continue;
            }
            let d = d2.sqrt().max(1e-6);
            let (c1, s1) = (u / d, v / d);
            let (c2, s2) = (c1 * c1 - s1 * s1, 2.0 * s1 * c1);
            let (c3, s3) = (c2 * c1 - s2 * s1, s2 * c1 + c2 * s1);
            let edge = 1.0 + n.harm[0] * c2 + n.harm[1] * s2 + n.harm[2] * c3 + n.harm[3] * s3;
            let rho = d / edge;
            // Anti-aliased coverage over about one pixel of the outline.
            let coverage = ((1.0 - rho) * n.b + 0.5).clamp(0.0, 1.0);
            if coverage <= 0.0 {
                continue;
            }
            let i = py as usize * fw + px as usize;
            if n.red_cell {
                f.eosin[i] += coverage * n.core * (0.7 + 0.3 * rho);
                continue;
            }
            let rim = ((rho - (1.0 - n.rim_width)) / 0.06).clamp(0.0, 1.0);
            let mut stain = n.core + (n.rim - n.core) * rim;
            let (gx, gy) = (
                ((ox + px) as f32 / n.grain) as i64,
                ((oy + py) as f32 / n.grain) as i64,
            );
            let grain = unit(hash2(n.id, gx, gy)) - 0.5;
            stain *= 1.0 + n.texture * grain * (1.0 - rim);
            for &(nx, ny, nr, nh) in &n.nucleoli[..n.nucleolus_count] {
                let (du, dv) = (u - nx, v - ny);
                let dist = (du * du * n.a * n.a + dv * dv * n.b * n.b).sqrt();
                let k = (nr + 0.5 - dist).clamp(0.0, 1.0);
                stain += k * (nh - stain).max(0.0);
                f.eosin[i] += k * 0.35;
            }
            f.haem[i] += coverage * stain;
            f.eosin[i] *= 1.0 - 0.55 * coverage;
        }
    }
}

/// In-place 3-tap blur [w, 1 − 2w, w] along rows then columns.
fn blur3(f: &mut [f32], w: usize, h: usize, wt: f32) {
    let mut tmp = f.to_vec();
    for y in 0..h {
        for x in 1..w.saturating_sub(1) {
            let i = y * w + x;
            tmp[i] = f[i] * (1.0 - 2.0 * wt) + (f[i - 1] + f[i + 1]) * wt;
        }
    }
    for y in 1..h.saturating_sub(1) {
        for x in 0..w {
            let i = y * w + x;
            f[i] = tmp[i] * (1.0 - 2.0 * wt) + (tmp[i - w] + tmp[i + w]) * wt;
        }
    }
}
