//! Cells of a grid (token probabilities above a threshold, tissue-mask pixels) as polygons:
//! 4-connected regions, each traced along its cells' edges into an exterior ring and its
//! holes, exact (no smoothing), valid as OGC (shapely, GEOS, JTS) judges: no ring passes
//! through a vertex twice. Where two cells of a region touch only at a corner, the ring
//! turns so that the region is joined there and the background split: a hole then touches
//! the exterior or another hole at that one point, which OGC allows, where a ring passing
//! through the corner twice would be a "Ring Self-intersection". Rings run counterclockwise
//! around the region's inside (exteriors) and clockwise around holes, on the coordinates as
//! numbers (RFC 7946's right-hand rule).

use std::collections::HashMap;

/// A region's outline: rings closed (first point = last), in grid units (x right, y down)
/// or, from [`trace_in_slide`], in level-0 pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Polygon {
    pub exterior: Vec<[f64; 2]>,
    pub holes: Vec<Vec<[f64; 2]>>,
}

/// 4-connected regions of the set cells of `mask` (`width` × `height`, row by row): one
/// label per cell (`u32::MAX` for unset cells) and the number of regions.
pub fn label_regions(mask: &[bool], width: usize, height: usize) -> (Vec<u32>, usize) {
    let mut labels = vec![u32::MAX; mask.len()];
    let mut count = 0usize;
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != u32::MAX {
            continue;
        }
        labels[start] = count as u32;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            let mut visit = |j: usize| {
                if mask[j] && labels[j] == u32::MAX {
                    labels[j] = count as u32;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        count += 1;
    }
    (labels, count)
}

/// One polygon per 4-connected region of `mask`, in label order, in grid units.
pub fn trace_regions(mask: &[bool], width: usize, height: usize) -> Vec<Polygon> {
    let (labels, count) = label_regions(mask, width, height);
    trace_labelled(&labels, count, width, height)
}

/// A grid laid over a slide: line i at level-0 i·`cell`, rounded to the 0.1 px the GeoJSON
/// is written with, and clipped to the slide's `extent` (level-0 width and height).
#[derive(Clone, Copy, Debug)]
pub struct SlideGrid {
    pub cell: f64,
    pub extent: [f64; 2],
}

impl SlideGrid {
    pub fn new(cell: f64, extent: [u64; 2]) -> SlideGrid {
        SlideGrid {
            cell,
            extent: [extent[0] as f64, extent[1] as f64],
        }
    }

    /// Line `i` along `axis` (0: x, 1: y), clipped to the slide.
    pub fn line(&self, i: usize, axis: usize) -> f64 {
        self.unclipped(i).min(self.extent[axis])
    }

    fn unclipped(&self, i: usize) -> f64 {
        (i as f64 * self.cell * 10.0).round() / 10.0
    }

    /// Whether cell (`col`, `row`) overlaps the slide (is not wholly beyond its right or
    /// bottom edge).
    pub fn overlaps(&self, col: usize, row: usize) -> bool {
        self.unclipped(col) < self.extent[0] && self.unclipped(row) < self.extent[1]
    }
}

/// [`trace_regions`] over a slide, in level-0 pixels: cells wholly outside the slide are
/// dropped, those across its edge clipped. Returns each cell's region label (`u32::MAX`
/// for none) and one polygon per region, in label order.
pub fn trace_in_slide(
    mask: &[bool],
    width: usize,
    height: usize,
    grid: SlideGrid,
) -> (Vec<u32>, Vec<Polygon>) {
    let inside: Vec<bool> = mask
        .iter()
        .enumerate()
        .map(|(i, &set)| set && grid.overlaps(i % width, i / width))
        .collect();
    let (labels, count) = label_regions(&inside, width, height);
    // With the cells beyond the slide gone, the only grid lines past its edge are the last
    // ones that cells across it end on: clipping moves them onto the edge and keeps every
    // line's order, so a valid outline stays valid.
    let ring = |r: &Vec<[f64; 2]>| -> Vec<[f64; 2]> {
        r.iter()
            .map(|p| [grid.line(p[0] as usize, 0), grid.line(p[1] as usize, 1)])
            .collect()
    };
    let polygons = trace_labelled(&labels, count, width, height)
        .iter()
        .map(|p| Polygon {
            exterior: ring(&p.exterior),
            holes: p.holes.iter().map(ring).collect(),
        })
        .collect();
    (labels, polygons)
}

/// One polygon per label of `labels` (`count` of them).
fn trace_labelled(labels: &[u32], count: usize, width: usize, height: usize) -> Vec<Polygon> {
    // Boundary edges of each region, directed with the region on their left (x right, y
    // up, as the numbers read): start vertex → end vertex.
    let mut edges: Vec<Vec<([i64; 2], [i64; 2])>> = vec![Vec::new(); count];
    let inside = |x: i64, y: i64, label: u32| {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < height
            && labels[y as usize * width + x as usize] == label
    };
    for (i, &label) in labels.iter().enumerate() {
        if label == u32::MAX {
            continue;
        }
        let (x, y) = ((i % width) as i64, (i / width) as i64);
        let e = &mut edges[label as usize];
        if !inside(x, y - 1, label) {
            e.push(([x, y], [x + 1, y]));
        }
        if !inside(x, y + 1, label) {
            e.push(([x + 1, y + 1], [x, y + 1]));
        }
        if !inside(x - 1, y, label) {
            e.push(([x, y + 1], [x, y]));
        }
        if !inside(x + 1, y, label) {
            e.push(([x + 1, y], [x + 1, y + 1]));
        }
    }
    edges.into_iter().map(|e| polygon_from_edges(&e)).collect()
}

/// Links one region's directed boundary edges into rings: the exterior (positive signed
/// area) and holes (negative).
fn polygon_from_edges(edges: &[([i64; 2], [i64; 2])]) -> Polygon {
    let mut from: HashMap<[i64; 2], Vec<usize>> = HashMap::new();
    for (i, e) in edges.iter().enumerate() {
        from.entry(e.0).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut rings = Vec::new();
    for first in 0..edges.len() {
        if used[first] {
            continue;
        }
        let mut ring = vec![edges[first].0];
        let mut current = first;
        loop {
            used[current] = true;
            let (a, b) = edges[current];
            ring.push(b);
            let heading = [b[0] - a[0], b[1] - a[1]];
            // Two edges leave a vertex where two cells of the region touch only at it: turn
            // right, away from the cell just followed, so that the ring crosses to the
            // other cell and never comes back through this vertex (see the module's doc).
            let next = from[&b].iter().copied().filter(|&j| !used[j]).min_by_key(|&j| {
                let d = [edges[j].1[0] - b[0], edges[j].1[1] - b[1]];
                heading[0] * d[1] - heading[1] * d[0]
            });
            match next {
                Some(j) => current = j,
                None => break,
            }
        }
        rings.push(simplify(ring));
    }
    let (mut exteriors, holes): (Vec<_>, Vec<_>) = rings.into_iter().partition(|r| signed_area(r) > 0.0);
    // A 4-connected region has one exterior ring.
    exteriors.sort_by(|a, b| signed_area(b).total_cmp(&signed_area(a)));
    Polygon {
        exterior: exteriors.into_iter().next().unwrap_or_default(),
        holes,
    }
}

/// A closed ring's area by the shoelace formula: positive for an exterior ring,
/// negative for a hole.
pub fn signed_area(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2)
        .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
        .sum::<f64>()
        / 2.0
}

impl Polygon {
    /// Area inside the exterior and outside the holes.
    pub fn area(&self) -> f64 {
        signed_area(&self.exterior) + self.holes.iter().map(|h| signed_area(h)).sum::<f64>()
    }
}

/// Drops vertices in the middle of straight runs; keeps the ring closed.
fn simplify(ring: Vec<[i64; 2]>) -> Vec<[f64; 2]> {
    let n = ring.len() - 1; // the last point repeats the first
    let mut out: Vec<[f64; 2]> = Vec::with_capacity(n + 1);
    for i in 0..n {
        let (p, c, q) = (ring[(i + n - 1) % n], ring[i], ring[(i + 1) % n]);
        let collinear = (c[0] - p[0]) * (q[1] - c[1]) - (c[1] - p[1]) * (q[0] - c[0]) == 0;
        if !collinear {
            out.push([c[0] as f64, c[1] as f64]);
        }
    }
    if let Some(&first) = out.first() {
        out.push(first);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        (
            rows.iter().flat_map(|r| r.chars().map(|c| c == '#')).collect(),
            w,
            rows.len(),
        )
    }

    /// Where two axis-parallel segments meet: the overlap of their bounding boxes.
    fn meet(a: [[f64; 2]; 2], b: [[f64; 2]; 2]) -> Option<[[f64; 2]; 2]> {
        let lo = |s: [[f64; 2]; 2], k: usize| s[0][k].min(s[1][k]);
        let hi = |s: [[f64; 2]; 2], k: usize| s[0][k].max(s[1][k]);
        let from = [lo(a, 0).max(lo(b, 0)), lo(a, 1).max(lo(b, 1))];
        let to = [hi(a, 0).min(hi(b, 0)), hi(a, 1).min(hi(b, 1))];
        (from[0] <= to[0] && from[1] <= to[1]).then_some([from, to])
    }

    fn segments(ring: &[[f64; 2]]) -> Vec<[[f64; 2]; 2]> {
        ring.windows(2).map(|w| [w[0], w[1]]).collect()
    }

    /// OGC validity of an outline of axis-parallel edges, checked as GEOS does: rings
    /// closed, of 4 distinct points at least, no point repeated but the closing one,
    /// edges meeting only where consecutive edges share their point; the exterior
    /// counterclockwise and holes clockwise; two rings meeting at one point at most,
    /// never crossing; and the area that of `cells` cells (holes inside the shell).
    fn assert_valid(p: &Polygon, cells: usize) {
        let rings: Vec<&Vec<[f64; 2]>> = std::iter::once(&p.exterior).chain(&p.holes).collect();
        for (k, ring) in rings.iter().enumerate() {
            assert!(ring.len() >= 5 && ring[0] == ring[ring.len() - 1], "{p:?}");
            let open = &ring[..ring.len() - 1];
            for (i, a) in open.iter().enumerate() {
                assert!(
                    !open[i + 1..].contains(a),
                    "ring {k} passes through {a:?} twice: {p:?}"
                );
            }
            let s = segments(ring);
            for i in 0..s.len() {
                for j in i + 1..s.len() {
                    let adjacent = j == i + 1 || (i == 0 && j == s.len() - 1);
                    match meet(s[i], s[j]) {
                        Some(m) if adjacent => assert_eq!(m[0], m[1], "ring {k} folds back: {p:?}"),
                        Some(m) => panic!("ring {k} meets itself at {m:?}: {p:?}"),
                        None => {}
                    }
                }
            }
            assert_eq!(
                signed_area(ring) > 0.0,
                k == 0,
                "ring {k} turns the wrong way: {p:?}"
            );
        }
        for a in 0..rings.len() {
            for b in a + 1..rings.len() {
                let mut touch = Vec::new();
                for sa in segments(rings[a]) {
                    for sb in segments(rings[b]) {
                        if let Some(m) = meet(sa, sb) {
                            assert_eq!(m[0], m[1], "rings {a} and {b} share an edge: {p:?}");
                            touch.push(m[0]);
                        }
                    }
                }
                touch.dedup();
                touch.sort_by(|x, y| x.partial_cmp(y).unwrap());
                touch.dedup();
                assert!(touch.len() <= 1, "rings {a} and {b} meet at {touch:?}: {p:?}");
            }
        }
        assert_eq!(p.area(), cells as f64, "{p:?}");
    }

    /// Every region of `mask` traced into a valid polygon of its cells' area.
    fn assert_all_valid(mask: &[bool], w: usize, h: usize) -> Vec<Polygon> {
        let (labels, count) = label_regions(mask, w, h);
        let polys = trace_regions(mask, w, h);
        assert_eq!(polys.len(), count);
        for (i, p) in polys.iter().enumerate() {
            assert_valid(p, labels.iter().filter(|&&l| l == i as u32).count());
        }
        polys
    }

    #[test]
    fn a_square_with_a_hole_and_a_separate_cell() {
        let (mask, w, h) = grid(&["###..", "#.#..", "###.#"]);
        let polys = assert_all_valid(&mask, w, h);
        assert_eq!(polys.len(), 2);
        let ring = &polys[0];
        assert_eq!(ring.exterior.len(), 5, "{:?}", ring.exterior);
        assert_eq!(ring.holes.len(), 1);
        assert_eq!(ring.holes[0].len(), 5);
        let xs: Vec<f64> = ring.exterior.iter().map(|p| p[0]).collect();
        assert_eq!(xs.iter().cloned().fold(f64::INFINITY, f64::min), 0.0);
        assert_eq!(xs.iter().cloned().fold(0.0, f64::max), 3.0);
        assert_eq!(polys[1].exterior.len(), 5);
        assert!(polys[1].exterior.contains(&[4.0, 2.0]) && polys[1].exterior.contains(&[5.0, 3.0]));
    }

    #[test]
    fn a_checkerboard_is_one_square_per_cell() {
        let (mask, w, h) = grid(&["#.#.#", ".#.#.", "#.#.#", ".#.#."]);
        let polys = assert_all_valid(&mask, w, h);
        assert_eq!(polys.len(), 10);
        assert!(polys.iter().all(|p| p.exterior.len() == 5 && p.holes.is_empty()));
    }

    #[test]
    fn blocks_touching_at_a_corner_are_separate_polygons() {
        let (mask, w, h) = grid(&["##...", "##...", "..###", "..###"]);
        let polys = assert_all_valid(&mask, w, h);
        assert_eq!(polys.len(), 2);
        assert!(polys.iter().all(|p| p.exterior.len() == 5 && p.holes.is_empty()));
    }

    #[test]
    fn a_hole_touching_the_shell_at_a_corner_is_a_hole() {
        // Two arms of one region touch at a corner and enclose background that reaches
        // the outside only through that corner (the sample s101 and CMU-1 tissue).
        for rows in [
            &["###", "#.#", "##."][..],
            &["###.", "#..#", "#..#", "####"][..],
            &["....", ".##.", ".#.#", ".###", "...."][..],
        ] {
            let (mask, w, h) = grid(rows);
            let polys = assert_all_valid(&mask, w, h);
            assert_eq!(polys.len(), 1, "{rows:?}");
            assert_eq!(polys[0].holes.len(), 1, "{rows:?}: {:?}", polys[0]);
        }
    }

    #[test]
    fn holes_touching_at_a_corner_stay_two_holes() {
        let (mask, w, h) = grid(&["#####", "#.###", "##.##", "#####"]);
        let polys = assert_all_valid(&mask, w, h);
        assert_eq!(polys.len(), 1);
        assert_eq!(polys[0].holes.len(), 2, "{:?}", polys[0]);
        // Four holes in a diagonal chain, and a hole touching both another hole and
        // the shell.
        let (mask, w, h) = grid(&["######", "#.####", "##.###", "###.##", "####.#", "######"]);
        assert_eq!(assert_all_valid(&mask, w, h)[0].holes.len(), 4);
        let (mask, w, h) = grid(&["####", "#.##", "##.#", "###."]);
        assert_eq!(assert_all_valid(&mask, w, h)[0].holes.len(), 2);
    }

    #[test]
    fn random_masks_trace_into_valid_polygons() {
        // Dense random masks are full of pinches: every kind of corner contact at once.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for &(w, h, density) in &[
            (12usize, 9usize, 0.5f64),
            (16, 16, 0.6),
            (20, 7, 0.7),
            (9, 15, 0.4),
        ] {
            for _ in 0..50 {
                let mask: Vec<bool> = (0..w * h)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 11) as f64 / (1u64 << 53) as f64 <= density
                    })
                    .collect();
                assert_all_valid(&mask, w, h);
            }
        }
    }

    #[test]
    fn cells_beyond_the_slide_are_dropped_and_those_across_its_edge_clipped() {
        // Cells of 10 px over a slide of 25 × 12 px: column 2 and row 1 cross its edge,
        // column 3 lies wholly outside.
        let (mask, w, h) = grid(&["####", "##.#", "####"]);
        let (labels, polys) = trace_in_slide(&mask, w, h, SlideGrid::new(10.0, [25, 12]));
        assert_eq!(polys.len(), 1);
        assert_eq!(labels.iter().filter(|&&l| l == 0).count(), 5);
        let p = &polys[0];
        assert!(p.holes.is_empty(), "{p:?}");
        assert_eq!(p.area(), 25.0 * 12.0 - 5.0 * 2.0, "{p:?}");
        assert!(p.exterior.iter().all(|q| q[0] <= 25.0 && q[1] <= 12.0));
        let grid = SlideGrid::new(10.0, [25, 12]);
        assert!(grid.overlaps(2, 1) && !grid.overlaps(3, 0) && !grid.overlaps(0, 2));
        assert_eq!(
            (grid.line(3, 0), grid.line(2, 0), grid.line(2, 1)),
            (25.0, 20.0, 12.0)
        );
    }
}
