//! Planning one synthetic lymph-node slide: tissue pieces and their anatomy (capsule,
//! subcapsular sinus, cortex with follicles, medulla with cords, sinuses and vessels,
//! perinodal fat), benign mimics of tumour, and tumour deposits in CAMELYON's size classes;
//! then a coarse map of which tissue is where, from which tiles are rendered.

use crate::annotation::polygon::{cells_centred_in, Polygon};
use crate::annotation::LesionClass;
use crate::util::rng::{hash, hash2, unit, Rng};
use serde::Serialize;

/// What a place on the slide is made of.
/// One byte each, so the region map stores them directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Region {
    Glass = 0,
    Capsule,
    Sinus,
    Cortex,
    Mantle,
    Germinal,
    Cord,
    Fat,
    VesselWall,
    VesselLumen,
    Histiocytes,
    Tumour,
}

#[derive(Clone, Debug)]
pub struct Lesion {
    pub class: LesionClass,
    pub outline: Polygon,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MimicKind {
    /// A follicle's germinal centre: larger, paler nuclei than lymphocytes, orderly.
    GerminalCentre,
    /// A cluster of sinus histiocytes: pale nuclei, abundant pink cytoplasm.
    Histiocytes,
}

#[derive(Clone, Debug)]
pub struct Mimic {
    pub kind: MimicKind,
    pub outline: Polygon,
}

struct Piece {
    outline: Polygon,
    /// Outline shrunk to the inner edge of the capsule, of the subcapsular sinus, and of the cortex.
    inside_capsule: Polygon,
    inside_sinus: Polygon,
    medulla: Polygon,
    fat: Option<Polygon>,
}

struct Circle {
    x: f64,
    y: f64,
    r: f64,
}

/// The slide's anatomy in level-0 pixels, plus the coarse region map.
pub struct Scene {
    pub width: u64,
    pub height: u64,
    pub mpp: f64,
    pub lesions: Vec<Lesion>,
    pub mimics: Vec<Mimic>,
    pub tissue: Vec<Polygon>,
    pub map: RegionMap,
}

/// Region and a per-structure variation (0–255) for every `cell`-pixel square.
pub struct RegionMap {
    pub cell: f64,
    pub cols: usize,
    pub rows: usize,
    codes: Vec<Region>,
    variation: Vec<u8>,
}

impl RegionMap {
    /// The region at level-0 pixel (x, y), and its variation in [0, 1].
    #[inline]
    pub fn at(&self, x: f64, y: f64) -> (Region, f32) {
        if x < 0.0 || y < 0.0 {
            return (Region::Glass, 0.5);
        }
        let (c, r) = ((x / self.cell) as usize, (y / self.cell) as usize);
        if c >= self.cols || r >= self.rows {
            return (Region::Glass, 0.5);
        }
        let i = r * self.cols + c;
        (self.codes[i], self.variation[i] as f32 / 255.0)
    }
}

/// How many deposits of each class a slide gets.
#[derive(Clone, Copy, Debug)]
pub struct TumourPlan {
    pub itc: usize,
    pub micro: usize,
    pub macro_: usize,
}

impl TumourPlan {
    pub fn draw(rng: &mut Rng, tissue_mm2: f64) -> TumourPlan {
        if rng.chance(0.25) {
            return TumourPlan {
                itc: 0,
                micro: 0,
                macro_: 0,
            };
        }
        let macro_ = usize::from(tissue_mm2 > 25.0 && rng.chance(0.45));
        let micro = rng.int(
            if macro_ == 1 { 0 } else { 1 },
            if tissue_mm2 > 10.0 { 3 } else { 2 },
        ) as usize;
        let itc = rng.int(0, 2) as usize;
        TumourPlan { itc, micro, macro_ }
    }
}

const MAP_CELL_UM: f64 = 4.0;

impl Scene {
    pub fn plan(seed: u64, width: u64, height: u64, mpp: f64, plan: Option<TumourPlan>) -> Scene {
        let mut rng = Rng::new(seed);
        let um = |v: f64| v / mpp; // µm to pixels
        let (w, h) = (width as f64, height as f64);

        // The tumour plan first: a macrometastasis needs a single large piece.
        let plan = plan.unwrap_or_else(|| TumourPlan::draw(&mut rng, w * h * mpp * mpp / 1e6 * 0.35));
        // Tissue: one to three node pieces, side by side, filling much of the glass.
        let n_pieces = if w.min(h) * mpp < 3000.0 || plan.macro_ > 0 {
            1
        } else {
            rng.int(1, 3) as usize
        };
        let mut pieces = Vec::new();
        let slot_w = w / n_pieces as f64;
        for i in 0..n_pieces {
            let r = (slot_w.min(h) / 2.0) * rng.range(0.62, 0.8);
            let cx = slot_w * (i as f64 + 0.5) + rng.range(-0.05, 0.05) * slot_w;
            let cy = h / 2.0 + rng.range(-0.08, 0.08) * h;
            let stretch = rng.range(0.8, 1.15);
            let mut outline = Polygon::irregular(&mut rng, cx, cy, r, 0.18, 7, 256);
            outline
                .points
                .iter_mut()
                .for_each(|p| p.1 = cy + (p.1 - cy) * stretch);
            let capsule = um(rng.range(25.0, 45.0));
            let sinus = um(rng.range(20.0, 40.0));
            let inside_capsule = outline.scaled(1.0 - capsule / r);
            let inside_sinus = outline.scaled(1.0 - (capsule + sinus) / r);
            let medulla = outline.scaled(rng.range(0.45, 0.6));
            let fat = rng.chance(0.6).then(|| {
                let t = rng.range(0.0, 2.0 * crate::util::rng::PI);
                let (fx, fy) = (
                    cx + r * crate::util::rng::cos(t),
                    cy + r * stretch * crate::util::rng::sin(t),
                );
                let fr = r * rng.range(0.25, 0.45);
                Polygon::irregular(&mut rng, fx, fy, fr, 0.3, 6, 128)
            });
            pieces.push(Piece {
                outline,
                inside_capsule,
                inside_sinus,
                medulla,
                fat,
            });
        }

        // Follicles in the cortex: a germinal centre inside a mantle of small lymphocytes.
        let mut follicles: Vec<(Circle, f64)> = Vec::new();
        let mut mimics = Vec::new();
        for p in &pieces {
            let (x0, y0, x1, y1) = p.outline.bounds();
            let wanted = ((x1 - x0) * (y1 - y0) * mpp * mpp / 1e6 * 0.9).ceil() as usize + 2;
            let mut tries = 0;
            let mut placed = 0;
            while placed < wanted && tries < wanted * 60 {
                tries += 1;
                let r = um(rng.range(130.0, 320.0));
                let (x, y) = (rng.range(x0, x1), rng.range(y0, y1));
                let ok = p.inside_sinus.contains(x, y)
                    && !p.medulla.contains(x, y)
                    && ring_inside(&p.inside_sinus, x, y, r)
                    && follicles
                        .iter()
                        .all(|(c, _)| distance(c.x, c.y, x, y) > c.r + r + um(30.0));
                if ok {
                    let gc = r * rng.range(0.55, 0.75);
                    mimics.push(Mimic {
                        kind: MimicKind::GerminalCentre,
                        outline: circle_polygon(x, y, gc, 48),
                    });
                    follicles.push((Circle { x, y, r }, gc));
                    placed += 1;
                }
            }
        }

        // Vessels in the medulla; clusters of sinus histiocytes in sinuses and medulla.
        let mut vessels: Vec<(Circle, f64)> = Vec::new();
        for p in &pieces {
            let (x0, y0, x1, y1) = p.medulla.bounds();
            for _ in 0..rng.int(2, 6) {
                for _ in 0..50 {
                    let (x, y) = (rng.range(x0, x1), rng.range(y0, y1));
                    if p.medulla.contains(x, y) {
                        let r = um(rng.range(15.0, 60.0));
                        vessels.push((Circle { x, y, r }, r + um(rng.range(5.0, 12.0))));
                        break;
                    }
                }
            }
            let (x0, y0, x1, y1) = p.inside_capsule.bounds();
            for _ in 0..rng.int(1, 4) {
                for _ in 0..200 {
                    let (x, y) = (rng.range(x0, x1), rng.range(y0, y1));
                    let r = um(rng.range(60.0, 450.0));
                    let outline = Polygon::irregular(&mut rng, x, y, r, 0.35, 8, 96);
                    let clear_of_follicles =
                        follicles.iter().all(|(c, _)| distance(c.x, c.y, x, y) > c.r + r);
                    if clear_of_follicles
                        && outline.points.iter().all(|q| p.inside_capsule.contains(q.0, q.1))
                    {
                        mimics.push(Mimic {
                            kind: MimicKind::Histiocytes,
                            outline,
                        });
                        break;
                    }
                }
            }
        }

        // Tumour deposits, inside the capsule, apart from each other.
        let mut lesions: Vec<Lesion> = Vec::new();
        let classes = std::iter::repeat_n(LesionClass::Macro, plan.macro_)
            .chain(std::iter::repeat_n(LesionClass::Micro, plan.micro))
            .chain(std::iter::repeat_n(LesionClass::Itc, plan.itc));
        for class in classes {
            if let Some(outline) = place_lesion(&mut rng, class, &pieces, &lesions, mpp) {
                lesions.push(Lesion { class, outline });
            }
        }

        let map = RegionMap::build(
            seed,
            width,
            height,
            um(MAP_CELL_UM),
            &pieces,
            &follicles,
            &vessels,
            &mimics,
            &lesions,
        );
        Scene {
            width,
            height,
            mpp,
            lesions,
            mimics,
            tissue: pieces.into_iter().map(|p| p.outline).collect(),
            map,
        }
    }
}

/// Euclidean distance with IEEE operations only (libm's hypot differs between platforms).
fn distance(x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
    ((x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0)).sqrt()
}

fn circle_polygon(x: f64, y: f64, r: f64, n: usize) -> Polygon {
    let points = (0..n)
        .map(|i| {
            let t = 2.0 * crate::util::rng::PI * i as f64 / n as f64;
            (x + r * crate::util::rng::cos(t), y + r * crate::util::rng::sin(t))
        })
        .collect();
    Polygon { points }
}

/// Whether a circle lies inside a polygon (tested on 16 points of its edge).
fn ring_inside(poly: &Polygon, x: f64, y: f64, r: f64) -> bool {
    circle_polygon(x, y, r, 16)
        .points
        .iter()
        .all(|p| poly.contains(p.0, p.1))
}

/// An irregular deposit of `class` whose longest diameter falls inside the class bounds,
/// inside a piece's capsule and at least 150 µm from other deposits.
fn place_lesion(
    rng: &mut Rng,
    class: LesionClass,
    pieces: &[Piece],
    others: &[Lesion],
    mpp: f64,
) -> Option<Polygon> {
    let (lo, hi) = match class {
        LesionClass::Itc => (40.0, 170.0),
        LesionClass::Micro => (260.0, 1800.0),
        LesionClass::Macro => (2200.0, 3600.0),
    };
    for _ in 0..400 {
        let diameter_um = rng.range(lo, hi);
        let piece = &pieces[rng.int(0, pieces.len() as i64 - 1) as usize];
        let (x0, y0, x1, y1) = piece.inside_capsule.bounds();
        let (x, y) = (rng.range(x0, x1), rng.range(y0, y1));
        let vertices = if class == LesionClass::Itc { 48 } else { 128 };
        let roughness = rng.range(0.3, 0.45);
        let shape = Polygon::irregular(rng, x, y, 100.0, roughness, 11, vertices);
        let outline = shape.scaled(diameter_um / mpp / shape.longest_diameter());
        let inside = outline
            .points
            .iter()
            .all(|p| piece.inside_capsule.contains(p.0, p.1));
        let (bx0, by0, bx1, by1) = outline.bounds();
        let gap = 150.0 / mpp;
        let apart = others.iter().all(|o| {
            let (ox0, oy0, ox1, oy1) = o.outline.bounds();
            bx1 + gap < ox0 || ox1 + gap < bx0 || by1 + gap < oy0 || oy1 + gap < by0
        });
        if inside && apart {
            return Some(outline);
        }
    }
    None
}

impl RegionMap {
    #[allow(clippy::too_many_arguments)]
    fn build(
        seed: u64,
        width: u64,
        height: u64,
        cell: f64,
        pieces: &[Piece],
        follicles: &[(Circle, f64)],
        vessels: &[(Circle, f64)],
        mimics: &[Mimic],
        lesions: &[Lesion],
    ) -> RegionMap {
        use rayon::prelude::*;
        let cols = (width as f64 / cell).ceil() as usize;
        let rows = (height as f64 / cell).ceil() as usize;
        // Per-structure variation: one draw per follicle, cluster and lesion.
        let var_of = |kind: u64, i: usize| (unit(hash(seed, 77, kind as i64, i as i64)) * 255.0) as u8;
        let row_data: Vec<(Vec<Region>, Vec<u8>)> = (0..rows)
            .into_par_iter()
            .map(|r| {
                let y = (r as f64 + 0.5) * cell;
                let mut codes = vec![Region::Glass; cols];
                let mut var = vec![128u8; cols];
                let fill = |spans: Vec<(f64, f64)>,
                            code: Region,
                            v: Option<u8>,
                            codes: &mut [Region],
                            var: &mut [u8]| {
                    for span in spans {
                        for c in cells_centred_in(span, cell, cols) {
                            codes[c] = code;
                            if let Some(v) = v {
                                var[c] = v;
                            }
                        }
                    }
                };
                for p in pieces {
                    if let Some(fat) = &p.fat {
                        fill(fat.row_spans(y), Region::Fat, None, &mut codes, &mut var);
                    }
                    fill(
                        p.outline.row_spans(y),
                        Region::Capsule,
                        None,
                        &mut codes,
                        &mut var,
                    );
                    fill(
                        p.inside_capsule.row_spans(y),
                        Region::Sinus,
                        None,
                        &mut codes,
                        &mut var,
                    );
                    fill(
                        p.inside_sinus.row_spans(y),
                        Region::Cortex,
                        None,
                        &mut codes,
                        &mut var,
                    );
                    fill(p.medulla.row_spans(y), Region::Cord, None, &mut codes, &mut var);
                }
                // Medulla: cords of cells and pale sinuses, by smooth noise.
                for c in 0..cols {
                    if codes[c] == Region::Cord {
                        let x = (c as f64 + 0.5) * cell;
                        if value_noise(seed ^ 0x5157, x / (cell * 12.0), y / (cell * 12.0)) < 0.42 {
                            codes[c] = Region::Sinus;
                        }
                    }
                    var[c] = (value_noise(seed ^ 0x7A11, (c as f64 + 0.5) / 20.0, (r as f64 + 0.5) / 20.0)
                        * 255.0) as u8;
                }
                for (i, (f, gc)) in follicles.iter().enumerate() {
                    fill(
                        circle_spans(f, y),
                        Region::Mantle,
                        Some(var_of(1, i)),
                        &mut codes,
                        &mut var,
                    );
                    let g = Circle {
                        x: f.x,
                        y: f.y,
                        r: *gc,
                    };
                    fill(
                        circle_spans(&g, y),
                        Region::Germinal,
                        Some(var_of(1, i)),
                        &mut codes,
                        &mut var,
                    );
                }
                for (v, wall) in vessels {
                    let outer = Circle {
                        x: v.x,
                        y: v.y,
                        r: *wall,
                    };
                    fill(
                        circle_spans(&outer, y),
                        Region::VesselWall,
                        None,
                        &mut codes,
                        &mut var,
                    );
                    fill(
                        circle_spans(v, y),
                        Region::VesselLumen,
                        None,
                        &mut codes,
                        &mut var,
                    );
                }
                for (i, m) in mimics
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.kind == MimicKind::Histiocytes)
                {
                    fill(
                        m.outline.row_spans(y),
                        Region::Histiocytes,
                        Some(var_of(2, i)),
                        &mut codes,
                        &mut var,
                    );
                }
                for (i, l) in lesions.iter().enumerate() {
                    fill(
                        l.outline.row_spans(y),
                        Region::Tumour,
                        Some(var_of(3, i)),
                        &mut codes,
                        &mut var,
                    );
                }
                (codes, var)
            })
            .collect();
        let mut codes = Vec::with_capacity(rows * cols);
        let mut variation = Vec::with_capacity(rows * cols);
        for (c, v) in row_data {
            codes.extend(c);
            variation.extend(v);
        }
        RegionMap {
            cell,
            cols,
            rows,
            codes,
            variation,
        }
    }
}

fn circle_spans(c: &Circle, y: f64) -> Vec<(f64, f64)> {
    let dy = y - c.y;
    if dy.abs() >= c.r {
        return Vec::new();
    }
    let half = (c.r * c.r - dy * dy).sqrt();
    vec![(c.x - half, c.x + half)]
}

/// Smooth value noise in [0, 1) with unit-sized lattice cells.
pub fn value_noise(seed: u64, x: f64, y: f64) -> f32 {
    value_noise2(seed, x, y).0
}

/// Two independent smooth value noises in [0, 1) from the same lattice hashes.
pub fn value_noise2(seed: u64, x: f64, y: f64) -> (f32, f32) {
    let (xf, yf) = (x.floor(), y.floor());
    let (ix, iy) = (xf as i64, yf as i64);
    let (fx, fy) = ((x - xf) as f32, (y - yf) as f32);
    let s = |t: f32| t * t * (3.0 - 2.0 * t);
    let (sx, sy) = (s(fx), s(fy));
    let corners = [
        hash2(seed, ix, iy),
        hash2(seed, ix + 1, iy),
        hash2(seed, ix, iy + 1),
        hash2(seed, ix + 1, iy + 1),
    ];
    let field = |shift: u32| {
        let v: [f32; 4] =
            std::array::from_fn(|k| ((corners[k] >> shift) & 0xFF_FFFF) as f32 / (1u32 << 24) as f32);
        let top = v[0] + (v[1] - v[0]) * sx;
        let bottom = v[2] + (v[3] - v[2]) * sx;
        top + (bottom - top) * sy
    };
    (field(40), field(8))
}
