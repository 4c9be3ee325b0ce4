//! Tiles that carry their own positions, as OpenSlide's tilemap grid keeps them: frames of a
//! DICOM TILED_SPARSE image placed off the tile grid, overlapping camera fields. Every tile
//! has the image's tile size; its corner may be any pixel. Each tile belongs to a cell of a
//! grid (the cell its corner lies in, or one the format names, as MIRAX's index does). Where
//! tiles overlap, one shows, chosen as OpenSlide's painting chooses it: OpenSlide paints the
//! cells from the bottom-right to the top-left with cairo's SATURATE operator, under which a
//! pixel once painted stays, so the tile of the last cell (row by row) shows; within one
//! cell, here, the lowest then rightmost corner, then the first given.

use super::grid::PlacedTile;
use std::collections::HashMap;

/// A tile's corner, its cell (column, row) and its payload.
pub(crate) type CellTile<T> = ((i64, i64), (i64, i64), T);

pub(crate) struct TileMap<T> {
    tile_width: i64,
    tile_height: i64,
    /// Corners and payloads, in the order of which shows: the first wins an overlap.
    tiles: Vec<((i64, i64), T)>,
    /// The tiles whose corner lies in each (column, row) of the tile grid (cells of the
    /// tile size), to find those touching a region.
    cells: HashMap<(i64, i64), Vec<u32>>,
}

impl<T> TileMap<T> {
    /// The map of `tiles` (corner, payload) of `tile_width` × `tile_height` pixels (both
    /// non-zero), each in the cell its corner lies in. Of tiles at the very same corner
    /// (focal planes, optical paths) the first given is kept.
    pub fn new(tile_width: u32, tile_height: u32, tiles: Vec<((i64, i64), T)>) -> TileMap<T> {
        let (tw, th) = (tile_width as i64, tile_height as i64);
        let tiles = tiles
            .into_iter()
            .map(|((x, y), t)| ((x, y), (x.div_euclid(tw), y.div_euclid(th)), t))
            .collect();
        TileMap::in_cells(tile_width, tile_height, tiles)
    }

    /// The map of `tiles` (corner, cell as (column, row), payload); the tile of the last cell
    /// shows where tiles overlap, as [`TileMap::new`]'s.
    pub fn in_cells(tile_width: u32, tile_height: u32, tiles: Vec<CellTile<T>>) -> TileMap<T> {
        let (tw, th) = (tile_width as i64, tile_height as i64);
        let mut tiles = tiles;
        // Stable: equal corners keep the order given, and the first of them is kept.
        tiles.sort_by_key(|&((x, y), (col, row), _)| std::cmp::Reverse((row, col, y, x)));
        tiles.dedup_by_key(|t| t.0);
        let tiles: Vec<((i64, i64), T)> = tiles.into_iter().map(|(corner, _, t)| (corner, t)).collect();
        // The spatial index: tiles by the cell of the tile grid their corner lies in.
        let mut cells: HashMap<(i64, i64), Vec<u32>> = HashMap::new();
        for (i, &((x, y), _)) in tiles.iter().enumerate() {
            cells
                .entry((x.div_euclid(tw), y.div_euclid(th)))
                .or_default()
                .push(i as u32);
        }
        TileMap {
            tile_width: tw,
            tile_height: th,
            tiles,
            cells,
        }
    }

    /// Tile `index`'s payload.
    pub fn get(&self, index: u64) -> Option<&T> {
        self.tiles.get(usize::try_from(index).ok()?).map(|t| &t.1)
    }

    /// The tiles touching pixels `x0..x1` × `y0..y1`, named (index, 0), the one that shows
    /// first.
    pub fn tiles_in(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<PlacedTile> {
        let (tw, th) = (self.tile_width, self.tile_height);
        // A tile touching the region has its corner within one tile of it, up or left.
        let cols = (x0 - tw + 1).div_euclid(tw)..=(x1 - 1).div_euclid(tw);
        let rows = (y0 - th + 1).div_euclid(th)..=(y1 - 1).div_euclid(th);
        let mut found: Vec<u32> = Vec::new();
        for row in rows {
            for col in cols.clone() {
                let Some(here) = self.cells.get(&(col, row)) else {
                    continue;
                };
                found.extend(here.iter().copied().filter(|&i| {
                    let (x, y) = self.tiles[i as usize].0;
                    x < x1 && y < y1 && x + tw > x0 && y + th > y0
                }));
            }
        }
        found.sort_unstable();
        found
            .into_iter()
            .map(|i| {
                let (x, y) = self.tiles[i as usize].0;
                PlacedTile {
                    col: i as u64,
                    row: 0,
                    x,
                    y,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::TileMap;

    /// Which tile shows at each pixel, by brute force over every tile in the map's order.
    fn shown(map: &TileMap<char>, x: i64, y: i64) -> Option<char> {
        (0..map.tiles.len() as u64)
            .map(|i| (map.tiles[i as usize].0, *map.get(i).unwrap()))
            .find(|&((tx, ty), _)| (tx..tx + 10).contains(&x) && (ty..ty + 8).contains(&y))
            .map(|t| t.1)
    }

    #[test]
    fn the_last_cell_shows_and_every_touching_tile_is_found() {
        // 10 × 8 tiles: a regular one, overlapping neighbours off the grid, two in one cell,
        // a duplicate corner (dropped: the first given stays), a negative corner.
        let tiles = vec![
            ((0, 0), 'a'),
            ((9, 0), 'b'),
            ((3, 5), 'c'),
            ((14, 3), 'd'),
            ((17, 6), 'e'),
            ((17, 6), 'E'),
            ((-4, 12), 'f'),
            ((25, 20), 'g'),
        ];
        let map = TileMap::new(10, 8, tiles);
        assert_eq!(map.tiles.len(), 7);
        // Row 2's cell (g), row 1's (f, whose cell is column −1), then row 0's from the right:
        // column 1 (e below d), column 0 (c, the lowest, then b and a).
        let order: Vec<char> = (0..7).map(|i| *map.get(i).unwrap()).collect();
        assert_eq!(order, ['g', 'f', 'e', 'd', 'c', 'b', 'a']);
        // b, d and e cover (17, 6): d and e share the later cell, and e is lower.
        assert_eq!(shown(&map, 17, 6), Some('e'));
        assert_eq!(shown(&map, 12, 2), Some('b'));
        for (x0, y0, x1, y1) in [(0, 0, 40, 30), (12, 4, 13, 5), (-5, 10, 2, 30), (26, 21, 40, 40)] {
            let listed = map.tiles_in(x0, y0, x1, y1);
            let want: Vec<u64> = (0..map.tiles.len() as u64)
                .filter(|&i| {
                    let (x, y) = map.tiles[i as usize].0;
                    x < x1 && y < y1 && x + 10 > x0 && y + 8 > y0
                })
                .collect();
            let got: Vec<u64> = listed.iter().map(|t| t.col).collect();
            assert_eq!(got, want, "region ({x0}, {y0})..({x1}, {y1})");
            for t in &listed {
                assert_eq!((t.x, t.y), map.tiles[t.col as usize].0);
            }
        }
    }
}
