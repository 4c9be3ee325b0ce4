//! Hamamatsu NDPI: each pyramid page is one JPEG strip with restart markers. A tile is one
//! restart interval (a row of MCUs); its start comes from the McuStarts tag (or a scan for
//! restart markers when that is missing), and it is decoded as a stand-alone JPEG, so a
//! region read touches only the intervals it needs. Levels finer than the file's pages are
//! not invented; the coarser ones OpenSlide offers (the smallest page at 1/2, 1/4, 1/8) are
//! made by averaging decoded pixels.

use super::{Format, Opened, Probe};
use crate::slide::codec::jpeg::{self, JpegLayout};
use crate::slide::codec::Tile;
use crate::slide::error::{corrupt, unsupported, Result};
use crate::slide::grid::{chunk_size, max_stored_bytes, GridShape, TileGrid};
use crate::slide::io::SlideFile;
use crate::slide::properties::{self, format_double, resolution_mpp, tiff_properties, Properties};
use crate::slide::resample::box_downsample;
use crate::slide::tifflike::{tag, Directory, Flavor};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

const SOURCE_LENS: u16 = 65421;
const X_OFFSET_FROM_CENTRE: u16 = 65422;
const Y_OFFSET_FROM_CENTRE: u16 = 65423;
const FOCAL_PLANE: u16 = 65424;
const MCU_STARTS: u16 = 65426;
const REFERENCE: u16 = 65427;
const MCU_STARTS_HIGH: u16 = 65432;
const PROPERTY_MAP: u16 = 65449;

/// Longest JPEG header (tables, frame, scan headers) we accept.
const MAX_HEADER_BYTES: u64 = 1 << 20;

pub(super) const FORMAT: Format = Format {
    name: "hamamatsu",
    why: "a TIFF with Hamamatsu NDPI's private tags (65420)",
    detect,
    open,
};

/// NDPI: a TIFF whose directories carry Hamamatsu's tags (found while parsing: the file's
/// offsets need NDPI's 64-bit high words).
fn detect(probe: &Probe) -> bool {
    probe.tiff.is_some_and(|t| t.flavor == Flavor::Ndpi)
}

fn open(probe: &Probe) -> Result<Opened> {
    let (file, tiff) = (probe.file.clone(), probe.tiff()?);
    let mut pages: Vec<Arc<NdpiPage>> = Vec::new();
    let mut associated: Vec<(String, Arc<dyn TileGrid>)> = Vec::new();
    for dir in &tiff.directories {
        let lens = dir
            .number(SOURCE_LENS)
            .ok_or_else(|| corrupt("NDPI directory without a SourceLens (65421) tag"))?;
        if lens > 0.0 {
            if dir.number(FOCAL_PLANE).unwrap_or(0.0) != 0.0 {
                continue; // another focal plane of a z-stack
            }
            let page = NdpiPage::new(file.clone(), dir)?;
            if pages.last().is_some_and(|p| p.shape.width <= page.shape.width) {
                return Err(corrupt("NDPI pages are not in decreasing size"));
            }
            pages.push(Arc::new(page));
        } else if lens == -1.0 {
            associated.push(("macro".into(), Arc::new(NdpiPage::new(file.clone(), dir)?)));
        }
    }
    if pages.is_empty() {
        return Err(corrupt("NDPI file without a pyramid page"));
    }

    // OpenSlide's levels: every page, plus each page decoded at 1/2, 1/4 and 1/8 where the
    // tile size allows; a real page replaces a scaled one of the same width.
    let mut by_width: BTreeMap<u64, Arc<dyn TileGrid>> = BTreeMap::new();
    for page in &pages {
        by_width.insert(page.shape.width, page.clone());
        for factor in [2u32, 4, 8] {
            let s = page.shape;
            if s.tile_width % factor == 0
                && s.tile_height % factor == 0
                && s.width >= factor as u64
                && s.height >= factor as u64
            {
                let scaled = Downsampled::new(page.clone(), factor);
                by_width.insert(scaled.shape.width, Arc::new(scaled));
            }
        }
    }
    let levels: Vec<Arc<dyn TileGrid>> = by_width.into_values().rev().collect();

    let d0 = &tiff.directories[0];
    let mut props = Properties::new();
    tiff_properties(d0, &mut props);
    ndpi_properties(d0, &mut props);
    Ok(Opened {
        vendor: FORMAT.name,
        detected_by: FORMAT.why.into(),
        levels,
        downsamples: Vec::new(),
        tile_hints: true,
        associated,
        properties: props,
        mpp: resolution_mpp(d0),
    })
}

fn ndpi_properties(d0: &Directory, props: &mut Properties) {
    if let Some(lens) = d0.number(SOURCE_LENS) {
        props.insert("hamamatsu.SourceLens".into(), format_double(lens));
        props.insert(properties::OBJECTIVE_POWER.into(), format_double(lens));
    }
    for (t, name) in [
        (X_OFFSET_FROM_CENTRE, "hamamatsu.XOffsetFromSlideCentre"),
        (Y_OFFSET_FROM_CENTRE, "hamamatsu.YOffsetFromSlideCentre"),
    ] {
        if let Some(v) = d0.number(t) {
            props.insert(name.into(), (v as i64).to_string());
        }
    }
    if let Some(r) = d0.string(REFERENCE) {
        props.insert("hamamatsu.Reference".into(), r);
    }
    if let Some(map) = d0.string(PROPERTY_MAP) {
        for record in map.split("\r\n") {
            if let Some((k, v)) = record.split_once('=') {
                if !k.is_empty() && !v.is_empty() {
                    props.insert(format!("hamamatsu.{k}"), v.to_string());
                }
            }
        }
    }
}

/// One NDPI page: a JPEG strip cut into restart intervals.
struct NdpiPage {
    file: Arc<SlideFile>,
    layout: JpegLayout,
    shape: GridShape,
    strip_offset: u64,
    strip_end: u64,
    /// File offsets of each interval's first entropy-coded byte, from the McuStarts tags.
    declared_starts: Option<Vec<u64>>,
    /// The same, found by scanning for restart markers when the tags are missing (or what
    /// was wrong, kept as text since errors are not `Clone`).
    scanned_starts: OnceLock<std::result::Result<Vec<u64>, String>>,
}

impl NdpiPage {
    fn new(file: Arc<SlideFile>, dir: &Directory) -> Result<NdpiPage> {
        let offsets = dir.uints(tag::STRIP_OFFSETS)?.unwrap_or_default();
        let counts = dir.uints(tag::STRIP_BYTE_COUNTS)?.unwrap_or_default();
        if offsets.len() != 1 || counts.len() != 1 {
            return Err(unsupported("NDPI page stored in more than one strip"));
        }
        let (strip_offset, strip_len) = (offsets[0], counts[0]);
        file.check_range(strip_offset, strip_len, "NDPI JPEG strip")?;
        let head = file.read_at(strip_offset, strip_len.min(MAX_HEADER_BYTES), "NDPI JPEG header")?;
        let layout = jpeg::parse_layout(&head)?;
        let (width, height) = (layout.frame.width as u64, layout.frame.height as u64);
        // A page without restart markers is decoded whole, so it is one chunk.
        let (tile_width, tile_height, tiles) = if layout.restart_interval == 0 {
            let (w, h) = chunk_size(width, height)
                .map_err(|_| unsupported(format!("NDPI page of {width}x{height} pixels without restart markers (more than 4096x4096 to decode whole)")))?;
            (w, h, 1)
        } else {
            let mcus_per_row = width.div_ceil(layout.mcu_width as u64);
            let ri = layout.restart_interval as u64;
            if ri > mcus_per_row || mcus_per_row % ri != 0 {
                return Err(unsupported(format!(
                    "NDPI restart interval of {ri} MCUs does not divide a row of {mcus_per_row}"
                )));
            }
            let tiles = (mcus_per_row / ri) * height.div_ceil(layout.mcu_height as u64);
            let (w, h) = chunk_size(layout.mcu_width as u64 * ri, layout.mcu_height as u64)?;
            (w, h, tiles)
        };
        let declared_starts = match (dir.uints(MCU_STARTS)?, dir.uints(MCU_STARTS_HIGH)?) {
            (Some(low), high) if low.len() as u64 == tiles => {
                let high = high.filter(|h| h.len() == low.len());
                // Offsets past the strip (or past 2^64) are caught when the interval is read.
                Some(
                    low.iter()
                        .enumerate()
                        .map(|(i, &l)| {
                            let full = l | high.as_ref().map_or(0, |h| h[i] << 32);
                            strip_offset.saturating_add(full)
                        })
                        .collect(),
                )
            }
            _ if tiles == 1 => Some(vec![strip_offset + layout.data_start]),
            _ => None,
        };
        Ok(NdpiPage {
            file,
            shape: GridShape {
                width,
                height,
                tile_width,
                tile_height,
            },
            layout,
            strip_offset,
            strip_end: strip_offset + strip_len,
            declared_starts,
            scanned_starts: OnceLock::new(),
        })
    }

    fn tile_count(&self) -> u64 {
        self.shape.tiles_across() * self.shape.tiles_down()
    }

    fn starts(&self) -> Result<&[u64]> {
        if let Some(s) = &self.declared_starts {
            return Ok(s);
        }
        self.scanned_starts
            .get_or_init(|| self.scan_restart_markers())
            .as_deref()
            .map_err(|e| corrupt(e.clone()))
    }

    /// Finds every interval's start by reading the strip for RST markers, 1 MiB at a time.
    fn scan_restart_markers(&self) -> std::result::Result<Vec<u64>, String> {
        let count = self.tile_count() as usize;
        let mut starts = vec![self.strip_offset + self.layout.data_start];
        let mut pos = starts[0];
        let mut prev_ff = false;
        while starts.len() < count && pos < self.strip_end {
            let block = self
                .file
                .read_up_to(pos, (1 << 20).min(self.strip_end - pos))
                .map_err(|e| e.to_string())?;
            for (i, &b) in block.iter().enumerate() {
                if prev_ff && (0xD0..=0xD7).contains(&b) {
                    starts.push(pos + i as u64 + 1);
                    if starts.len() == count {
                        break;
                    }
                }
                prev_ff = b == 0xFF;
            }
            pos += block.len() as u64;
        }
        if starts.len() < count {
            return Err(format!(
                "NDPI strip has {} restart intervals, expected {count}",
                starts.len()
            ));
        }
        Ok(starts)
    }
}

impl TileGrid for NdpiPage {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, row: u64) -> Result<Option<Tile>> {
        let index = (row * self.shape.tiles_across() + col) as usize;
        let starts = self.starts()?;
        let start = starts[index];
        let end = starts
            .get(index + 1)
            .map_or(self.strip_end, |&next| next.saturating_sub(2));
        // Each interval but the first follows its restart marker.
        let marker = if index > 0 { 2 } else { 0 };
        if start > end || start < self.strip_offset + marker || end > self.strip_end {
            return Err(corrupt(format!("NDPI restart interval {index} has a bad offset")));
        }
        let s = self.shape;
        if end - start > max_stored_bytes(s.tile_width as u64 * s.tile_height as u64) {
            return Err(corrupt(format!(
                "NDPI restart interval {index} is {} bytes long, more than its pixels can take",
                end - start
            )));
        }
        let bytes = self
            .file
            .read_at(start - marker, end - start + marker, "NDPI restart interval")?;
        if index > 0 && !(bytes[0] == 0xFF && (0xD0..=0xD7).contains(&bytes[1])) {
            return Err(corrupt(format!(
                "NDPI restart interval {index} does not follow a restart marker"
            )));
        }
        let mut entropy = &bytes[marker as usize..];
        if index as u64 + 1 == self.tile_count() {
            // The last interval ends with the strip's EOI (perhaps padded with zeros after
            // it): a strip without one was cut short.
            let end = entropy.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            entropy = entropy[..end]
                .strip_suffix(&jpeg::EOI)
                .ok_or_else(|| corrupt("NDPI JPEG strip ends without an EOI marker (truncated)"))?;
        }
        let stream = self.layout.interval_stream(entropy, s.tile_width, s.tile_height);
        let tile = jpeg::decode(&stream, s.tile_width, s.tile_height)?;
        Ok(Some(tile))
    }
}

/// A page seen at 1/`factor` of its size: each tile is the box average of the page's tile.
struct Downsampled {
    page: Arc<NdpiPage>,
    factor: u32,
    shape: GridShape,
}

impl Downsampled {
    fn new(page: Arc<NdpiPage>, factor: u32) -> Self {
        let s = page.shape;
        let shape = GridShape {
            width: s.width / factor as u64,
            height: s.height / factor as u64,
            tile_width: s.tile_width / factor,
            tile_height: s.tile_height / factor,
        };
        Downsampled { page, factor, shape }
    }
}

impl TileGrid for Downsampled {
    fn shape(&self) -> GridShape {
        self.shape
    }

    fn decode_tile(&self, col: u64, row: u64) -> Result<Option<Tile>> {
        let Some(src) = self.page.decode_tile(col, row)? else {
            return Ok(None);
        };
        let (rgba, w, h) = box_downsample(
            &src.rgba,
            src.width as usize,
            src.height as usize,
            4,
            self.factor as usize,
        );
        Ok(Some(Tile {
            width: w as u32,
            height: h as u32,
            rgba,
        }))
    }
}
