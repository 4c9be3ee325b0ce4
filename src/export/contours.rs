//! Cells of a grid (token probabilities above a threshold, tissue-mask pixels) as polygons:
//! 4-connected regions, each traced along its cells' edges into an exterior ring and its
//! holes, exact (no smoothing), in grid units.

use std::collections::HashMap;

/// A region's outline: rings closed (first point = last), in grid units (x right, y down).
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

/// One polygon per 4-connected region of `mask`, in label order.
pub fn trace_regions(mask: &[bool], width: usize, height: usize) -> Vec<Polygon> {
    let (labels, count) = label_regions(mask, width, height);
    // Boundary edges of each region, directed with the region on their left (y down):
    // start vertex → end vertex.
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
            e.push(([x + 1, y], [x, y]));
        }
        if !inside(x, y + 1, label) {
            e.push(([x, y + 1], [x + 1, y + 1]));
        }
        if !inside(x - 1, y, label) {
            e.push(([x, y], [x, y + 1]));
        }
        if !inside(x + 1, y, label) {
            e.push(([x + 1, y + 1], [x + 1, y]));
        }
    }
    edges.into_iter().map(|e| polygon_from_edges(&e)).collect()
}

/// Links one region's directed boundary edges into rings: the exterior (negative signed
/// area with y down) and holes (positive).
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
            // Where two edges leave a vertex (regions touching at a corner), turn left, so
            // that each ring stays on its own side of the pinch.
            let next = from[&b].iter().copied().filter(|&j| !used[j]).max_by_key(|&j| {
                let d = [edges[j].1[0] - b[0], edges[j].1[1] - b[1]];
                // Left of heading (dx, dy) with y down is (dy, −dx).
                d[0] * heading[1] - d[1] * heading[0]
            });
            match next {
                Some(j) => current = j,
                None => break,
            }
        }
        rings.push(simplify(ring));
    }
    let (mut exteriors, holes): (Vec<_>, Vec<_>) = rings.into_iter().partition(|r| signed_area(r) < 0.0);
    // A 4-connected region has one exterior ring.
    exteriors.sort_by(|a, b| signed_area(a).total_cmp(&signed_area(b)));
    Polygon {
        exterior: exteriors.into_iter().next().unwrap_or_default(),
        holes,
    }
}

/// A closed ring's area by the shoelace formula: negative for an exterior ring as traced
/// here (y down), positive for a hole.
pub fn signed_area(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2)
        .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
        .sum::<f64>()
        / 2.0
}

impl Polygon {
    /// Area inside the exterior and outside the holes.
    pub fn area(&self) -> f64 {
        signed_area(&self.exterior).abs() - self.holes.iter().map(|h| signed_area(h).abs()).sum::<f64>()
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

    #[test]
    fn a_square_with_a_hole_and_a_separate_cell() {
        let (mask, w, h) = grid(&["###..", "#.#..", "###.#"]);
        let polys = trace_regions(&mask, w, h);
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
    fn cells_touching_at_a_corner_are_separate_regions() {
        let (mask, w, h) = grid(&["#.", ".#"]);
        let (_, count) = label_regions(&mask, w, h);
        assert_eq!(count, 2);
        let polys = trace_regions(&mask, w, h);
        assert!(polys.iter().all(|p| p.exterior.len() == 5 && p.holes.is_empty()));
    }

    #[test]
    fn a_ring_pinched_at_a_corner_keeps_its_hole() {
        // An L-shaped ring whose hole touches the outside only at a corner.
        let (mask, w, h) = grid(&["###", "#.#", "##."]);
        let polys = trace_regions(&mask, w, h);
        assert_eq!(polys.len(), 1);
        let total =
            -signed_area(&polys[0].exterior) - polys[0].holes.iter().map(|h| signed_area(h)).sum::<f64>();
        assert_eq!(total, 7.0, "{:?}", polys[0]);
        assert_eq!(polys[0].area(), 7.0);
    }
}
