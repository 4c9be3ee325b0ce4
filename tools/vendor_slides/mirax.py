"""MIRAX (3DHistech .mrxs) test slides, written by hand from real pixels, with this module's
own decode of every level: `decode` below is a small MIRAX reader that reads the written
files back by the rules OpenSlide 4.0.1 applies (Slidedat.ini, Index.dat pages read back to
back, camera positions, per-photo subtiles, active positions, paint order and compositing).
Reference: OpenSlide.

A MIRAX slide is NAME.mrxs (OpenSlide only checks that it exists; here a small JPEG) beside
a folder NAME/ holding Slidedat.ini (UTF-8 with a BOM, CRLF lines, "KEY = value"), Index.dat
and the data files (Data0000.dat, ...; each begins with a 296-byte header: "01.02", the slide
id, a 3-digit file number, 256 zero bytes). Camera fields ("photos") are cut from the source
at their own positions and tinted by -24, 0 or +24 by field ((col + 2 row) % 3), as
tools/slide_refs.camera_fields does, so which of two overlapping fields shows is visible in
the pixels. The positions are this module's own (camera_fields' 2-pixel jitter cannot be
chosen): in three slides they are jittered by whole multiples of the coarsest level's
image_concat, so every level places its tiles on whole pixels (plain copies); in
mirax-png-subpixel by 1 px, so levels 1 and 2 place tiles at half and quarter pixels, which
OpenSlide resamples. The first/last row and column are only jittered inwards, so no tile
leaves the level's nominal size (OpenSlide does not clip tiles to it).

Where fields overlap, OpenSlide shows the tile of the highest tile-map row, and within a row
the highest column: it paints tiles from the bottom-right with cairo's SATURATE operator (a
paint only fills what is still transparent). pixman computes SATURATE in its float pipeline;
a tile at a fractional position is sampled bilinearly there and its outer pixels are partly
transparent, so seams blend the two tiles. `decode` paints the same way (_paint_openslide)
and matches OpenSlide 4.0.1 (openslide-bin 4.0.1.2: cairo 1.18.4, pixman 0.46.4) bit for bit,
partly transparent pixels included; regions avoid those (rgb + mask cannot express them).

Slides (level-0 sizes; each level 2x smaller):

  mirax-jpeg-stitching  1504 x 1184, 4 levels (IMAGE_CONCAT_FACTOR 0,1,1,1), JPEG q80
      images of 160 x 128, CameraImageDivisionsPerSide = 2 (each 320 x 256 camera photo is
      stored as 2 x 2 images at level 0), 5 x 5 photos stepping 296 x 232 (OVERLAP_X 24,
      OVERLAP_Y 24) jittered by -8/0/+8 px: every neighbour pair overlaps by 8..40 px.
      Positions in a zlib-compressed StitchingIntensityLayer record (9-byte records).
      Photo (2,1) is missing (no level-0 images, position 0,0, flag 0); the level-1 image
      that holds only that photo is still written (fill colour): OpenSlide skips it because
      the position is inactive, so the hole stays transparent at every level. Photo (3,3)
      lacks its top-right level-0 image (a hole at level 0 only): the photo is active, so
      from level 1 on it is drawn whole from the coarser images, whose quarter for the
      missing image is fill colour. At levels 2 and 3 one image holds 2x2 / 4x4 photos and
      is split into per-photo subtiles, each placed at its own position / image_concat
      (the last image column/row runs past IMAGENUMBER_X/Y: those subtiles are not drawn).
      Two data files (level-0 rows 0..4 in Data0000.dat, the rest, the coarser levels and
      the non-hierarchical records in Data0001.dat); level 0's index list spans 4 pages.
      Label (ScanDataLayer_SlideBarcode), macro (ScanDataLayer_SlideThumbnail) and
      thumbnail (ScanDataLayer_SlidePreview), all JPEG. Fill colour white, MPP 0.2325,
      OBJECTIVE_MAGNIFICATION 20; bounds properties set (bounds-x 8: no field starts at x 0).

  mirax-png-vimslide  736 x 464, 3 levels (0,1,1), PNG (RGB, lossless) images of 160 x 128,
      no CameraImageDivisionsPerSide key (1 division), 5 x 4 fields stepping 144 x 112
      (OVERLAP 16) jittered by -4/0/+4 px, positions in an uncompressed
      VIMSLIDE_POSITION_BUFFER record (listed before the scan data layer, so the associated
      images' record numbers are shifted). From level 1 every image holds 2x2 (level 2:
      4x4) fields as subtiles; the image column at x = 4 runs past IMAGENUMBER_X = 5.
      Field (1,2) is missing (no level-0 image; its subtile in the coarser images is fill
      colour and skipped). Field (3,1) has all its images but its recorded position is
      (0,0): OpenSlide takes a (0,0) position of any field but the first as "no data" and
      drops that field at every level (a transparent hole where the pixels exist). Level-0
      entries are listed out of order over 3 pages. Two data files (label in Data0001,
      macro in Data0000); no thumbnail. Fill colour BGR 0xE0E8F0 (background F0E8E0).

  mirax-png-subpixel  473 x 266, 3 levels (0,1,1), PNG images of 128 x 96, 1 division, 4 x 3
      fields stepping 115 x 85 (OVERLAP 13, 11; 6.5, 5.5 and 3.25, 2.75 at levels 1, 2, so
      the tile advances are fractional too) jittered by -1/0/+1 px, VIMSLIDE positions: at
      levels 1 and 2 the positions / 2 and / 4 fall on .25/.5/.75 pixels. Seams, quarter-
      pixel placement and the subtiles of the coarser images (each resampled from its own
      copy, so its edges blend with transparency, then with the tile below). Label only.

  mirax-bmp-exported  288 x 240, 3 levels, BMP24 (bottom-up, lossless) images of 96 x 80, no
      position record and zero overlap, as "exported" slides are: OpenSlide lays fields on
      the nominal grid. CameraImageDivisionsPerSide = 2 and level-0 IMAGE_CONCAT_FACTOR 1
      (a 1:2 export: every stored level-0 image is one photo at half size; downsamples are
      still 1, 2, 4; positions counted in original images; IMAGENUMBER 6 x 6). Photos (2,0)
      and (2,1) are missing at level 0. Without positions, a coarser image is drawn whole
      when any camera position under it is active (positions_per_tile 2 at level 1, 4 at
      level 2), so the fill colour of missing photos shows (opaque) at levels 1 and 2. The
      level-1 image at x = 4, y = 0 covers only missing photos (2,0), (2,1) and columns past
      the edge; OpenSlide's active test walks positions xp..xp+1 without a bound on the
      column and reaches photos (0,1) and (0,2) of the next rows, so it draws that image
      (fill colour) too. Level 0's index pages carry "next" pointers back to the first page
      (a loop): OpenSlide reads pages one after another and uses "next" only as "more
      follows", so it opens. Tile-size hints present (96 x 80). The level-1 image at x = 4
      reaches past the level's width (drawn there by OpenSlide; regions stop at the edge).
      One data file; no associated images. OBJECTIVE_MAGNIFICATION "20x" (OpenSlide strips
      the x).

  Refused (OpenSlide fails to open them; a reader must refuse them too), each a copy of a
  small 2 x 2-field JPEG slide with one lie:
  mirax-refuse-index-version   Index.dat starts "01.03" instead of "01.02".
  mirax-refuse-position-size   the StitchingIntensityLayer record inflates to 9 bytes
                               fewer than 9 x (number of positions).
  mirax-refuse-image-y         a level-0 index entry names image 12 of an IMAGENUMBER 2 x 2
                               slide (row 6, past IMAGENUMBER_Y).

Regions are level-0 coordinates (level-k regions start on multiples of 2^k) over overlaps,
the missing fields, edges (some running past the level's size: transparent there) and whole
coarse levels. Everything is written in about 3 s; the slides take about 2.6 MB.
"""

import hashlib
import io
import os
import struct
import sys
import zlib

import imagecodecs
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slide_refs import downsample, label_image, overview_image  # noqa: E402

INDEX_VERSION = b"01.02"
DATA_HEADER = 296


# ----------------------------------------------------------------------------- writing

def _bgr(r, g, b):
    return (b << 16) | (g << 8) | r


def _jpeg(rgb, q=80):
    return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(rgb), level=q))


def _png(rgb):
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(rgb), level=6))


def _bmp(rgb):
    """24-bit BI_RGB bottom-up BMP with a 40-byte BITMAPINFOHEADER (what OpenSlide reads)."""
    h, w = rgb.shape[:2]
    row = (w * 3 + 3) & ~3
    pix = np.zeros((h, row), np.uint8)
    pix[:, :w * 3] = rgb[::-1, :, ::-1].reshape(h, w * 3)
    data = pix.tobytes()
    return (struct.pack("<2sIII", b"BM", 54 + len(data), 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0) + data)


def _positions(px, py, step, unit):
    """Camera positions: field (c, r) at (c, r) * step moved by -unit, 0 or +unit in x and y;
    in the first row/column the move is made positive, in the last negative (inwards)."""
    out = {}
    for r in range(py):
        for c in range(px):
            jx = ((2 * c + r) % 3 - 1) * unit
            jy = ((c + 2 * r + 1) % 3 - 1) * unit
            jx = abs(jx) if c == 0 else -abs(jx) if c == px - 1 else jx
            jy = abs(jy) if r == 0 else -abs(jy) if r == py - 1 else jy
            out[(c, r)] = (c * step[0] + jx, r * step[1] + jy)
    return out


def _field(crop, x, y, w, h, c, r):
    tint = ((c + 2 * r) % 3 - 1) * 24
    return np.clip(crop[y:y + h, x:x + w].astype(np.int16) + tint, 0, 255).astype(np.uint8)


class _Writer:
    """Lays out one MIRAX slide: data files, Index.dat, Slidedat.ini."""

    def __init__(self, slide_id, nfiles):
        self.slide_id = slide_id
        self.files = []
        for i in range(nfiles):
            hdr = INDEX_VERSION + slide_id.encode() + b"%03d" % i
            self.files.append(bytearray(hdr + bytes(DATA_HEADER - len(hdr))))

    def put(self, fileno, data):
        f = self.files[fileno]
        off = len(f)
        f += data
        return off, len(data), fileno

    def index(self, hier, nonhier, page_size, loop_levels=(), version=INDEX_VERSION):
        """hier: per hierarchical record a list of (image_index, offset, length, fileno);
        nonhier: per non-hierarchical record (offset, length, fileno) or None (empty: table
        entry 0, as real slides have). Pages hold at most page_size[record] entries; their
        "next" pointers name the following page, or for records in loop_levels the first
        page (OpenSlide reads pages back to back and only tests "next" against 0)."""
        out = bytearray(version + self.slide_id.encode())
        hier_table = len(out) + 8
        nonhier_table = hier_table + 4 * len(hier)
        out += struct.pack("<ii", hier_table, nonhier_table)
        out += bytes(4 * (len(hier) + len(nonhier)))
        for i, entries in enumerate(hier):
            head = len(out)
            struct.pack_into("<i", out, hier_table + 4 * i, head)
            first = head + 8
            out += struct.pack("<ii", 0, first)
            n = page_size.get(i, 1 << 30)
            pages = [entries[k:k + n] for k in range(0, len(entries), n)] or [[]]
            for p, page in enumerate(pages):
                start = len(out)
                end = start + 8 + 16 * len(page)
                nxt = 0 if p == len(pages) - 1 else (first if i in loop_levels else end)
                out += struct.pack("<ii", len(page), nxt)
                for e in page:
                    out += struct.pack("<iiii", *e)
        for i, rec in enumerate(nonhier):
            if rec is None:
                continue
            head = len(out)
            struct.pack_into("<i", out, nonhier_table + 4 * i, head)
            out += struct.pack("<ii", 0, head + 8)
            off, length, fileno = rec
            out += struct.pack("<ii", 1, 0) + struct.pack("<iiiii", 0, 0, off, length, fileno)
        return bytes(out)


def _slidedat(groups):
    lines = []
    for name, items in groups:
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in items]
    return b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode()


def _write_slide(folder, name, cfg):
    """Writes NAME.mrxs and NAME/ from cfg:
      slide_id, images_x, images_y, divisions (None: key left out), objective
      levels: [dict(exp, overlap, mpp, fill, fmt, size)]
      images: per level [(image_index, encoded bytes, fileno)] in index order
      positions: None or (kind "stitching"/"vimslide", raw 9-byte records)
      positions_first: list the position layer before the scan data layer
      position_blob: bytes stored instead of the zlib stream (refusal slides)
      associated: {openslide name: (jpeg, fileno)}; associated_order: their order in the
      scan data layer; nfiles, page_size {level: n}, loop_levels, index_version, mrxs."""
    w = _Writer(cfg["slide_id"], cfg["nfiles"])
    hier = []
    for lv in cfg["images"]:
        hier.append([(idx,) + w.put(fileno, data) for idx, data, fileno in lv])
    hier.append([])  # the filter level record (Slide filter level, FilterLevel_0)

    # non-hierarchical layers: (layer name, layer section keys, [(value, value section keys,
    # record (offset, length, fileno) or None)])
    scan = []
    assoc_keys = {"macro": ("ScanDataLayer_SlideThumbnail", "THUMBNAIL"),
                  "label": ("ScanDataLayer_SlideBarcode", "BARCODE"),
                  "thumbnail": ("ScanDataLayer_SlidePreview", "PREVIEW")}
    for aname in cfg["associated_order"]:
        value, key = assoc_keys[aname]
        jpeg, fileno = cfg["associated"][aname]
        a = np.asarray(imagecodecs.jpeg8_decode(jpeg))
        scan.append((value, [(f"{key}_IMAGE_TYPE", "JPEG"), (f"{key}_IMAGE_WIDTH", a.shape[1]),
                             (f"{key}_IMAGE_HEIGHT", a.shape[0])], w.put(fileno, jpeg)))
    scan.append(("ScanDataLayer_WhiteBalance", [("WHITEBALANCE_IMAGE_TYPE", "JPEG")], None))
    scan_layer = ("Scan data layer", [("SCANNER_HARDWARE_VERSION", "P250-1")], scan)
    pos_layer = None
    if cfg["positions"] is not None:
        kind, raw = cfg["positions"]
        if kind == "stitching":
            blob = zlib.compress(raw, 9) if not cfg.get("position_blob") else cfg["position_blob"]
            pos_layer = ("StitchingIntensityLayer", [("STITCHING_INTENSITY_VERSION", "1")],
                         [("StitchingIntensityLevel", [("COMPRESSSED_STITCHING_VERSION", "2")],
                           w.put(cfg["nfiles"] - 1, blob))])
        else:
            pos_layer = ("VIMSLIDE_POSITION_BUFFER", [("VIMSLIDE_POSITION_DATA_FORMAT_VERSION", "257")],
                         [("default", [], w.put(cfg["nfiles"] - 1, raw))])
    layers = [scan_layer] + ([pos_layer] if pos_layer else [])
    if cfg.get("positions_first") and pos_layer:
        layers = [pos_layer, scan_layer]
    nonhier = [rec for _, _, vals in layers for _, _, rec in vals]
    index = w.index(hier, nonhier, cfg.get("page_size", {}), cfg.get("loop_levels", ()),
                    cfg.get("index_version", INDEX_VERSION))

    nlev = len(cfg["levels"])
    general = [("SLIDE_VERSION", "01.02"), ("SLIDE_ID", cfg["slide_id"]), ("SLIDE_NAME", name),
               ("SLIDE_TYPE", "SLIDE_TYPE_BRIGHTFIELD"), ("CURRENT_SLIDE_VERSION", "1.9"),
               ("IMAGENUMBER_X", cfg["images_x"]), ("IMAGENUMBER_Y", cfg["images_y"])]
    if cfg["divisions"] is not None:
        general.append(("CameraImageDivisionsPerSide", cfg["divisions"]))
    if cfg.get("objective") is not None:
        general.append(("OBJECTIVE_MAGNIFICATION", cfg["objective"]))
    general.append(("OBJECTIVE_NAME", "Plan-Apochromat"))
    hier_keys = [("HIER_COUNT", 2), ("HIER_0_NAME", "Slide zoom level"), ("HIER_0_COUNT", nlev),
                 ("HIER_0_SECTION", "LAYER_0_SECTION")]
    for i in range(nlev):
        hier_keys += [(f"HIER_0_VAL_{i}", f"ZoomLevel_{i}"), (f"HIER_0_VAL_{i}_SECTION", f"LAYER_0_LEVEL_{i}_SECTION")]
    hier_keys += [("HIER_1_NAME", "Slide filter level"), ("HIER_1_COUNT", 1), ("HIER_1_SECTION", "LAYER_1_SECTION"),
                  ("HIER_1_VAL_0", "FilterLevel_0"), ("HIER_1_VAL_0_SECTION", "LAYER_1_LEVEL_0_SECTION"),
                  ("INDEXFILE", "Index.dat"), ("NONHIER_COUNT", len(layers))]
    sections = []
    for i, (lname, lkeys, vals) in enumerate(layers):
        hier_keys += [(f"NONHIER_{i}_NAME", lname), (f"NONHIER_{i}_COUNT", len(vals)),
                      (f"NONHIER_{i}_SECTION", f"NONHIERLAYER_{i}_SECTION")]
        sections.append((f"NONHIERLAYER_{i}_SECTION", lkeys))
        for j, (vname, vkeys, _) in enumerate(vals):
            hier_keys += [(f"NONHIER_{i}_VAL_{j}", vname), (f"NONHIER_{i}_VAL_{j}_SECTION", f"NONHIERLAYER_{i}_LEVEL_{j}_SECTION")]
            sections.append((f"NONHIERLAYER_{i}_LEVEL_{j}_SECTION", vkeys))
    groups = [("GENERAL", general), ("HIERARCHICAL", hier_keys),
              ("DATAFILE", [("FILE_COUNT", cfg["nfiles"])] + [(f"FILE_{i}", f"Data{i:04d}.dat") for i in range(cfg["nfiles"])]),
              ("LAYER_0_SECTION", [("LAYER_NAME", "Slide zoom level")])]
    for i, lv in enumerate(cfg["levels"]):
        groups.append((f"LAYER_0_LEVEL_{i}_SECTION", [
            ("OVERLAP_X", lv["overlap"][0]), ("OVERLAP_Y", lv["overlap"][1]),
            ("MICROMETER_PER_PIXEL_X", lv["mpp"]), ("MICROMETER_PER_PIXEL_Y", lv["mpp"]),
            ("IMAGE_FILL_COLOR_BGR", lv["fill"]), ("DIGITIZER_WIDTH", lv["size"][0]),
            ("DIGITIZER_HEIGHT", lv["size"][1]), ("IMAGE_CONCAT_FACTOR", lv["exp"]),
            ("IMAGE_FORMAT", lv["fmt"]), ("IMAGE_COMPRESSION_FACTOR", 80)]))
    groups += [("LAYER_1_SECTION", [("LAYER_NAME", "Slide filter level")]),
               ("LAYER_1_LEVEL_0_SECTION", [("FILTER_NAME", "Default")])] + sections

    d = os.path.join(folder, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "Slidedat.ini"), "wb") as f:
        f.write(_slidedat(groups))
    with open(os.path.join(d, "Index.dat"), "wb") as f:
        f.write(index)
    for i, data in enumerate(w.files):
        with open(os.path.join(d, f"Data{i:04d}.dat"), "wb") as f:
            f.write(data)
    with open(os.path.join(folder, name + ".mrxs"), "wb") as f:
        f.write(cfg["mrxs"])
    return name + ".mrxs"


# ----------------------------------------------------------------------------- reading

def _read_ini(path):
    """Slidedat.ini as GKeyFile reads it after OpenSlide's clean-up: BOM skipped, lines whose
    key is empty ("= x") blanked, key right-trimmed, value left-trimmed; values raw."""
    raw = open(path, "rb").read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    groups, cur = {}, None
    for line in raw.decode("utf-8", "replace").split("\n"):
        s = line[:-1].lstrip() if line.endswith("\r") else line.lstrip()
        if not s or s.startswith("#") or s.startswith("="):
            continue
        if s.startswith("[") and s.rstrip().endswith("]"):
            cur = groups.setdefault(s.rstrip()[1:-1], {})
            continue
        k, v = s.split("=", 1)
        cur[k.rstrip()] = v.lstrip()
    return groups


def _i32(buf, off):
    if off < 0 or off + 4 > len(buf):
        raise ValueError(f"read past the end of Index.dat at {off}")
    return struct.unpack_from("<i", buf, off)[0]


def _decode_image(data, fmt):
    if fmt == "JPEG":
        return np.asarray(imagecodecs.jpeg8_decode(data))
    if fmt == "PNG":
        return np.asarray(imagecodecs.png_decode(data))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


F32 = np.float32


def _to_float(c):
    """8-bit channel values as pixman's float pipeline holds them (c * float32(1/255))."""
    return np.asarray(c).astype(F32) * (F32(1.0) / F32(255.0))


def _to_8bit(f):
    """pixman's float to 8-bit: truncate f * 256, then map 256 to 255."""
    u = (np.clip(f, F32(0.0), F32(1.0)) * F32(256.0)).astype(np.uint32)
    return (u - (u >> 8)).astype(np.uint8)


def _sample(src, x0, y0, w, h, fx, fy):
    """A tile (float a, r, g, b; h x w x 4) placed at fractional (fx, fy), seen through the
    w x h canvas box at (x0, y0): pixman's bilinear filter in its float pipeline. The sample
    point of canvas pixel X is X + 1/2 - fx in 16.16 fixed point; left tap at its floor
    after subtracting 1/2, weight of the right tap the fraction; outside the tile: 0."""
    th_, tw_ = src.shape[:2]
    out = []
    for n, org, f in ((w, x0, fx), (h, y0, fy)):
        v = (np.arange(n, dtype=np.int64) + org) * 65536 + 32768 - int(round(f * 65536)) - 32768
        out.append((v >> 16, (v & 0xffff).astype(F32) / F32(65536.0)))
    (xi, dx), (yi, dy) = out
    pad = np.zeros((th_ + 2, tw_ + 2, 4), F32)
    pad[1:-1, 1:-1] = src

    def at(yy, xx):
        return pad[np.clip(yy + 1, 0, th_ + 1)][:, np.clip(xx + 1, 0, tw_ + 1)]
    one = F32(1.0)
    DX, DY = dx[None, :, None], dy[:, None, None]
    return (((at(yi, xi) * ((one - DX) * (one - DY)) + at(yi, xi + 1) * (DX * (one - DY)))
             + at(yi + 1, xi) * ((one - DX) * DY)) + at(yi + 1, xi + 1) * (DX * DY))


def _paint_openslide(tiles, W, H, tw, th):
    """A level from its tiles {(col, row): (x, y, image, src_x, src_y)}, each tw x th, painted
    as OpenSlide 4.0.1 (cairo 1.18 / pixman 0.46) does: from the highest row, and within it
    the highest column, down to (0, 0), each with the SATURATE operator (a paint only fills
    what is still transparent: the first opaque paint stays), which pixman computes in its
    float pipeline; a tile at a fractional position is resampled bilinearly, its outer pixels
    partly transparent. Returns (rgb, mask, partial): rgb un-premultiplied as openslide-python
    gives it, mask where opaque, partial where 0 < alpha < 255."""
    can = np.zeros((H, W, 4), np.uint8)  # premultiplied a, r, g, b
    cw, ch = int(np.ceil(tw)), int(np.ceil(th))
    for (col, row) in sorted(tiles, key=lambda cr: (cr[1], cr[0]), reverse=True):
        fx, fy, img, sx, sy = tiles[(col, row)]
        assert float(sx).is_integer() and float(sy).is_integer(), "subtiles start on whole pixels"
        sub = img[int(sy):int(sy) + ch, int(sx):int(sx) + cw, :3]
        src = np.concatenate([np.ones(sub.shape[:2] + (1,), F32), _to_float(sub)], axis=2)
        x0, y0 = max(int(np.floor(fx)) - 1, 0), max(int(np.floor(fy)) - 1, 0)
        x1, y1 = min(int(np.ceil(fx + sub.shape[1])) + 1, W), min(int(np.ceil(fy + sub.shape[0])) + 1, H)
        if x0 >= x1 or y0 >= y1:
            continue
        if float(fx).is_integer() and float(fy).is_integer():
            s = np.zeros((y1 - y0, x1 - x0, 4), F32)
            ox, oy = int(fx), int(fy)
            ax0, ay0, ax1, ay1 = max(ox, x0), max(oy, y0), min(ox + sub.shape[1], x1), min(oy + sub.shape[0], y1)
            s[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = src[ay0 - oy:ay1 - oy, ax0 - ox:ax1 - ox]
        else:
            s = _sample(src, x0, y0, x1 - x0, y1 - y0, fx, fy)
        d = _to_float(can[y0:y1, x0:x1])
        sa, da = s[..., :1], d[..., :1]
        zero = np.abs(sa) < np.finfo(F32).tiny
        fa = np.where(zero, F32(1.0), np.clip((F32(1.0) - da) / np.where(zero, F32(1.0), sa), F32(0.0), F32(1.0)))
        can[y0:y1, x0:x1] = _to_8bit(np.minimum(F32(1.0), s * fa.astype(F32) + d))
    a = can[..., 0].astype(np.int64)
    rgb = can[..., 1:].astype(np.int64)
    part = (a > 0) & (a < 255)
    rgb = np.where(part[..., None], rgb * 255 // np.maximum(a, 1)[..., None], rgb).astype(np.uint8)
    return rgb, a == 255, part


def decode(mrxs, painter=_paint_openslide):
    """This module's reading of a MIRAX slide, as OpenSlide 4.0.1 renders it. Returns
    dict(levels=[(rgb, mask, partial)], associated={name: rgb}, props={openslide property:
    value}, quickhash=hex, downsamples)."""
    d = mrxs[:-len(".mrxs")]
    ini = _read_ini(os.path.join(d, "Slidedat.ini"))
    gen, hie = ini["GENERAL"], ini["HIERARCHICAL"]
    slide_id = gen["SLIDE_ID"]
    images_x, images_y = int(gen["IMAGENUMBER_X"]), int(gen["IMAGENUMBER_Y"])
    div = int(gen.get("CameraImageDivisionsPerSide", 1))
    assert hie["HIER_0_NAME"] == "Slide zoom level"
    nlev = int(hie["HIER_0_COUNT"])
    secs = [ini[hie[f"HIER_0_VAL_{i}_SECTION"]] for i in range(nlev)]
    files = [os.path.join(d, ini["DATAFILE"][f"FILE_{i}"]) for i in range(int(ini["DATAFILE"]["FILE_COUNT"]))]
    data = [open(p, "rb").read() for p in files]

    # non-hierarchical record numbers: running count over NONHIER_i_VAL_j
    rec_of, n = {}, 0
    for i in range(int(hie["NONHIER_COUNT"])):
        lname = hie[f"NONHIER_{i}_NAME"]
        for j in range(int(hie[f"NONHIER_{i}_COUNT"])):
            rec_of.setdefault((lname, None), n)
            rec_of[(lname, hie[f"NONHIER_{i}_VAL_{j}"])] = n
            n += 1
    idx = open(os.path.join(d, hie["INDEXFILE"]), "rb").read()
    if idx[:5] != INDEX_VERSION or idx[5:5 + len(slide_id)] != slide_id.encode():
        raise ValueError("Index.dat version or slide id")
    hier_root = 5 + len(slide_id)

    def nonhier(rec):
        table = _i32(idx, hier_root + 4)
        head = _i32(idx, table + 4 * rec)
        assert _i32(idx, head) == 0
        page = _i32(idx, head + 4)
        assert _i32(idx, page) >= 1 and _i32(idx, page + 8) == 0 and _i32(idx, page + 12) == 0
        off, size, fileno = (_i32(idx, page + 16 + 4 * k) for k in range(3))
        return data[fileno][off:off + size]

    npos = (images_x // div) * (images_y // div)
    px = images_x // div
    l0 = secs[0]
    iw0, ih0 = int(l0["DIGITIZER_WIDTH"]), int(l0["DIGITIZER_HEIGHT"])
    ov = float(l0["OVERLAP_X"]), float(l0["OVERLAP_Y"])
    exps = [int(s["IMAGE_CONCAT_FACTOR"]) for s in secs]
    concat = [1 << sum(exps[:k + 1]) for k in range(nlev)]
    have_pos = None
    if ("VIMSLIDE_POSITION_BUFFER", None) in rec_of:
        raw = nonhier(rec_of[("VIMSLIDE_POSITION_BUFFER", None)])
        have_pos = "vimslide"
    elif ("StitchingIntensityLayer", None) in rec_of:
        raw = zlib.decompress(nonhier(rec_of[("StitchingIntensityLayer", None)]))
        have_pos = "stitching"
    if have_pos:
        if len(raw) != 9 * npos:
            raise ValueError("position buffer size")
        pos = []
        for i in range(npos):
            flag, x, y = struct.unpack_from("<Bii", raw, 9 * i)
            assert not flag & 0xfe
            pos.append((x * concat[0], y * concat[0]))
    else:
        pos = [((i % px) * (iw0 * div - ov[0]), (i // px) * (ih0 * div - ov[1])) for i in range(npos)]

    def base(n_img, size, o):
        t = 0
        for i in range(n_img):
            t = int(t + (size if (i % div != div - 1 or i == n_img - 1) else size - o))
        return t
    base_w, base_h = base(images_x, iw0, ov[0]), base(images_y, ih0, ov[1])
    subtiles = have_pos is not None or ov != (0.0, 0.0)

    active, levels, bounds = set(), [], None
    hier_table = _i32(idx, hier_root)
    for k in range(nlev):
        s = secs[k]
        iw, ih = int(s["DIGITIZER_WIDTH"]), int(s["DIGITIZER_HEIGHT"])
        c = concat[k]
        per_image = max(1, c // div)
        if subtiles:
            tcd, tpi, ppt = min(c, div), per_image, 1
        else:
            tcd, tpi, ppt = c, 1, per_image
        tw, th = iw / tpi, ih / tpi
        W, H = base_w // c, base_h // c
        head = _i32(idx, hier_table + 4 * k)
        assert _i32(idx, head) == 0
        p = _i32(idx, head + 4)
        tiles = {}
        while True:  # pages back to back; "next" only says whether another follows
            count, nxt = _i32(idx, p), _i32(idx, p + 4)
            p += 8
            for _ in range(count):
                image_index, off, length, fileno = (_i32(idx, p + 4 * q) for q in range(4))
                p += 16
                x, y = image_index % images_x, image_index // images_x
                assert y < images_y and x % c == 0 and y % c == 0 and 0 <= fileno < len(files)
                img = None
                for yi in range(tpi):
                    yy = y + yi * div
                    if yy >= images_y:
                        break
                    for xi in range(tpi):
                        xx = x + xi * div
                        if xx >= images_x:
                            break
                        xp, yp = xx // div, yy // div
                        cp = yp * px + xp
                        p0 = (pos[cp][0] + iw0 * (xx - xp * div), pos[cp][1] + ih0 * (yy - yp * div))
                        if k == 0:
                            if pos[cp] == (0, 0) and (xp or yp):
                                continue
                            active.add(cp)
                        elif not any(yq * px + xq in active for yq in range(yp, yp + ppt)
                                     for xq in range(xp, xp + ppt)):
                            continue
                        if img is None:
                            img = _decode_image(data[fileno][off:off + length], s["IMAGE_FORMAT"])
                            assert img.shape[:2] == (ih, iw), (img.shape, iw, ih)
                        tiles[(x // tcd + xi, y // tcd + yi)] = (p0[0] / c, p0[1] / c, img, tw * xi, th * yi)
            if nxt == 0:
                break
        levels.append(painter(tiles, W, H, tw, th))
        if k == 0 and tiles:
            xs = [t[0] for t in tiles.values()]
            ys = [t[1] for t in tiles.values()]
            bounds = (min(xs), min(ys), max(xs) + tw, max(ys) + th, W, H)

    assoc = {}
    for aname, value, key in (("macro", "ScanDataLayer_SlideThumbnail", "THUMBNAIL"),
                              ("label", "ScanDataLayer_SlideBarcode", "BARCODE"),
                              ("thumbnail", "ScanDataLayer_SlidePreview", "PREVIEW")):
        if ("Scan data layer", value) in rec_of:
            assoc[aname] = np.asarray(imagecodecs.jpeg8_decode(nonhier(rec_of[("Scan data layer", value)])))

    props = {"openslide.mpp-x": "%.17g" % float(l0["MICROMETER_PER_PIXEL_X"]),
             "openslide.mpp-y": "%.17g" % float(l0["MICROMETER_PER_PIXEL_Y"])}
    fill = int(l0["IMAGE_FILL_COLOR_BGR"])
    props["openslide.background-color"] = "%02X%02X%02X" % (fill & 255, fill >> 8 & 255, fill >> 16 & 255)
    mag = gen.get("OBJECTIVE_MAGNIFICATION", "")
    mag = mag[:-1] if mag.endswith("x") else mag
    if mag.isdigit() and int(mag) > 0:
        props["openslide.objective-power"] = str(int(mag))
    if bounds:
        bx, by, right, bottom, W, H = bounds
        bw, bh = min(right - bx, W - bx), min(bottom - by, H - by)
        if (bx, by, bw, bh) != (0, 0, W, H):
            props.update({"openslide.bounds-x": str(int(bx)), "openslide.bounds-y": str(int(by)),
                          "openslide.bounds-width": str(int(np.ceil(bx + bw) - np.floor(bx))),
                          "openslide.bounds-height": str(int(np.ceil(by + bh) - np.floor(by)))})
    # quickhash-1: Slidedat.ini, then every image of the last level in index order
    h = hashlib.sha256(open(os.path.join(d, "Slidedat.ini"), "rb").read())
    head = _i32(idx, hier_table + 4 * (nlev - 1))
    p = _i32(idx, head + 4)
    while True:
        count, nxt = _i32(idx, p), _i32(idx, p + 4)
        p += 8
        for _ in range(count):
            _, off, length, fileno = (_i32(idx, p + 4 * q) for q in range(4))
            h.update(data[fileno][off:off + length])
            p += 16
        if nxt == 0:
            break
    return dict(levels=levels, associated=assoc, props=props, quickhash=h.hexdigest(),
                downsamples=[c // concat[0] for c in concat])


# ----------------------------------------------------------------------------- slides

def _fields_slide(crop, *, div, iw, ih, px, py, overlap, unit, exps, fill_rgb,
                  missing=(), partial=(), zero_pos=()):
    """Images of a slide with camera positions. A photo is div x div images of iw x ih; level
    k (image_concat c) stores images at multiples of c, each photo in it shrunk by c: c/div
    photos per side once c >= div. Returns (positions raw, images per level, positions)."""
    pw, ph = iw * div, ih * div
    step = (pw - overlap[0], ph - overlap[1])
    posn = _positions(px, py, step, unit)
    images_x, images_y = px * div, py * div
    photos = {}
    for (c, r), (x, y) in posn.items():
        if (c, r) in missing:
            continue
        ph_img = _field(crop, x, y, pw, ph, c, r).copy()
        for (pc, pr, i, j) in partial:
            if (pc, pr) == (c, r):
                ph_img[j * ih:(j + 1) * ih, i * iw:(i + 1) * iw] = fill_rgb
        photos[(c, r)] = ph_img
    raw = b""
    for r in range(py):
        for c in range(px):
            if (c, r) in missing:
                raw += struct.pack("<Bii", 0, 0, 0)
            elif (c, r) in zero_pos:
                raw += struct.pack("<Bii", 1, 0, 0)
            else:
                raw += struct.pack("<Bii", 1, *posn[(c, r)])
    levels = []
    total = 0
    for k, e in enumerate(exps):
        total += e
        cc = 1 << total
        out = []
        if k == 0:
            assert cc == 1, "level 0 of these slides is not concatenated"
            for (c, r), img in sorted(photos.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                for j in range(div):
                    for i in range(div):
                        if (c, r, i, j) not in partial:
                            out.append(((r * div + j) * images_x + c * div + i,
                                        img[j * ih:(j + 1) * ih, i * iw:(i + 1) * iw]))
            levels.append(out)
            continue
        if cc < div:
            raise ValueError("levels holding less than one photo per image are not generated")
        per = cc // div  # photos per image side
        sw, sh = pw // cc, ph // cc
        for y in range(0, images_y, cc):
            for x in range(0, images_x, cc):
                img = np.empty((ih, iw, 3), np.uint8)
                img[:] = fill_rgb
                any_photo = False
                for yi in range(per):
                    for xi in range(per):
                        c, r = x // div + xi, y // div + yi
                        if (c, r) in posn:
                            any_photo = True
                        if (c, r) in photos:
                            img[yi * sh:(yi + 1) * sh, xi * sw:(xi + 1) * sw] = downsample(photos[(c, r)], cc)
                if any_photo:
                    out.append((y * images_x + x, img))
        levels.append(out)
    return raw, levels, posn


def _assoc(crop, name):
    lab = label_image([name, "MIRAX test slide", "flashslide"], name, 240, 200)
    macro = overview_image(crop, lab, 640, 200)
    return lab, macro


def _describe(folder, path, name, notes, fmt_lossless, regions, assoc_names):
    dec = decode(os.path.join(folder, path))
    levels = [dict(rgb=rgb, mask=mask, lossless=fmt_lossless) for rgb, mask, _ in dec["levels"]]
    for rname, level, x, y, w, h in regions:
        ds = dec["downsamples"][level]
        assert x % ds == 0 and y % ds == 0, rname
        part = dec["levels"][level][2][max(y // ds, 0):y // ds + h, max(x // ds, 0):x // ds + w]
        assert not part.any(), f"{name} {rname}: partly transparent pixels (not expressible as rgb + mask)"
    associated = {a: (dec["associated"][a], False) for a in assoc_names}
    assert sorted(associated) == sorted(dec["associated"])
    return dict(name=name, format="mirax", path=path, notes=notes, reference="openslide",
                levels=levels, regions=regions, associated=associated)


def _slide_jpeg(folder, source):
    name = "mirax-jpeg-stitching"
    div, iw, ih, px, py = 2, 160, 128, 5, 5
    overlap, unit, exps = (24, 24), 8, [0, 1, 1, 1]
    W0, H0 = px * div * iw - (px - 1) * overlap[0], py * div * ih - (py - 1) * overlap[1]
    crop = np.ascontiguousarray(source[640:640 + H0, 560:560 + W0])
    fill = _bgr(255, 255, 255)
    raw, imgs, _ = _fields_slide(crop, div=div, iw=iw, ih=ih, px=px, py=py, overlap=overlap, unit=unit,
                                 exps=exps, missing={(2, 1)},
                                 partial={(3, 3, 1, 0)}, fill_rgb=(255, 255, 255))
    images = []
    for k, lv in enumerate(imgs):
        # level 0: rows 0..4 in Data0000, the rest in Data0001
        images.append([(i, _jpeg(img), 0 if k == 0 and i // (px * div) < 5 else 1) for i, img in lv])
    lab, macro = _assoc(crop, name)
    thumb = downsample(crop, 8)
    cfg = dict(slide_id="6D1C0B9E2F7A4C55B1E2A3D4C5B6A7F8", images_x=px * div, images_y=py * div, divisions=div,
               objective="20", nfiles=2, images=images, positions=("stitching", raw),
               levels=[dict(exp=e, overlap=(overlap[0] >> k, overlap[1] >> k), mpp=0.2325 * (1 << k),
                            fill=fill, fmt="JPEG", size=(iw, ih)) for k, e in enumerate(exps)],
               associated={"label": (_jpeg(lab, 90), 1), "macro": (_jpeg(macro, 90), 1),
                           "thumbnail": (_jpeg(thumb, 90), 1)},
               associated_order=["macro", "label", "thumbnail"], page_size={0: 26},
               mrxs=_jpeg(downsample(crop, 16), 85))
    path = _write_slide(folder, name, cfg)
    regions = [
        ("l0-top-left-corner", 0, 0, 0, 192, 160),
        ("l0-four-photo-junction", 0, 520, 400, 208, 176),
        ("l0-missing-photo", 0, 560, 200, 400, 320),
        ("l0-photo-lacking-one-image", 0, 1000, 660, 256, 240),
        ("l0-bottom-right-past-edge", 0, 1376, 1056, 192, 192),
        ("l1-missing-photo-and-partial", 1, 400, 160, 400, 360),
        ("l2-whole", 2, 0, 0, 376, 296),
        ("l3-whole-and-past-edge", 3, 0, 0, 200, 160),
    ]
    notes = ("JPEG, 2x2 images per camera photo, 5x5 overlapping jittered photos, StitchingIntensityLayer "
             "(zlib) positions, 4 levels with per-photo subtiles, one photo missing, one photo lacking "
             "one level-0 image, two data files, label/macro/thumbnail")
    return _describe(folder, path, name, notes, False, regions, ["label", "macro", "thumbnail"])


def _slide_png(folder, source):
    name = "mirax-png-vimslide"
    div, iw, ih, px, py = 1, 160, 128, 5, 4
    overlap, unit, exps = (16, 16), 4, [0, 1, 1]
    W0, H0 = px * iw - (px - 1) * overlap[0], py * ih - (py - 1) * overlap[1]
    crop = np.ascontiguousarray(source[1950:1950 + H0, 900:900 + W0])
    fill_rgb = (0xF0, 0xE8, 0xE0)
    fill = _bgr(*fill_rgb)
    raw, imgs, _ = _fields_slide(crop, div=div, iw=iw, ih=ih, px=px, py=py, overlap=overlap, unit=unit,
                                 exps=exps, missing={(1, 2)}, zero_pos={(3, 1)},
                                 fill_rgb=fill_rgb)
    images = []
    for k, lv in enumerate(imgs):
        if k == 0:
            lv = lv[1::2] + lv[0::2]  # out of order in the index
        images.append([(i, _png(img), 0 if k == 0 else 1) for i, img in lv])
    lab, macro = _assoc(crop, name)
    cfg = dict(slide_id="0F3E5D7C9B1A48E6A2C4E6F8091B3D5F", images_x=px, images_y=py, divisions=None,
               objective=None, nfiles=2, images=images, positions=("vimslide", raw), positions_first=True,
               levels=[dict(exp=e, overlap=(overlap[0] >> k, overlap[1] >> k), mpp=0.25 * (1 << k),
                            fill=fill, fmt="PNG", size=(iw, ih)) for k, e in enumerate(exps)],
               associated={"label": (_jpeg(lab, 90), 1), "macro": (_jpeg(macro, 90), 0)},
               associated_order=["label", "macro"], page_size={0: 7},
               mrxs=_jpeg(downsample(crop, 8), 85))
    path = _write_slide(folder, name, cfg)
    regions = [
        ("l0-top-left", 0, 0, 0, 176, 144),
        ("l0-missing-field", 0, 96, 176, 256, 224),
        ("l0-zero-position-field", 0, 380, 64, 240, 192),
        ("l0-right-column-and-past-edge", 0, 560, 300, 200, 180),
        ("l1-whole", 1, 0, 0, 368, 232),
        ("l2-whole-and-past-edge", 2, 0, 0, 192, 120),
    ]
    notes = ("PNG (lossless), 1 image per field, 5x4 overlapping jittered fields, VIMSLIDE_POSITION_BUFFER, "
             "3 levels with subtiles, a missing field, a field at recorded position (0,0) (dropped by "
             "OpenSlide), out-of-order index over 3 pages, two data files, label + macro")
    return _describe(folder, path, name, notes, True, regions, ["label", "macro"])


def _slide_subpixel(folder, source):
    """Positions that do not divide by image_concat: OpenSlide resamples the coarser levels."""
    name = "mirax-png-subpixel"
    div, iw, ih, px, py = 1, 128, 96, 4, 3
    overlap, unit, exps = (13, 11), 1, [0, 1, 1]
    W0, H0 = px * iw - (px - 1) * overlap[0], py * ih - (py - 1) * overlap[1]
    crop = np.ascontiguousarray(source[1300:1300 + H0, 1500:1500 + W0])
    raw, imgs, posn = _fields_slide(crop, div=div, iw=iw, ih=ih, px=px, py=py, overlap=overlap, unit=unit,
                                    exps=exps, fill_rgb=(255, 255, 255))
    fracs = {(x % 4, y % 4) for x, y in posn.values()}
    assert len({f[0] for f in fracs}) >= 3 and len({f[1] for f in fracs}) >= 3, fracs
    images = [[(i, _png(img), 0) for i, img in lv] for lv in imgs]
    lab, macro = _assoc(crop, name)
    cfg = dict(slide_id="5E6F708192A3B4C5D6E7F8091A2B3C4D", images_x=px, images_y=py, divisions=1,
               objective="40", nfiles=1, images=images, positions=("vimslide", raw),
               levels=[dict(exp=e, overlap=(overlap[0] / (1 << k), overlap[1] / (1 << k)), mpp=0.1215 * (1 << k),
                            fill=_bgr(255, 255, 255), fmt="PNG", size=(iw, ih)) for k, e in enumerate(exps)],
               associated={"label": (_jpeg(lab, 90), 0)}, associated_order=["label"],
               mrxs=_jpeg(downsample(crop, 4), 85))
    path = _write_slide(folder, name, cfg)
    regions = [
        ("l0-seams", 0, 96, 64, 192, 160),
        ("l1-inside", 1, 8, 8, 220, 118),
        ("l2-inside", 2, 8, 8, 108, 56),
    ]
    notes = ("PNG (lossless), 4x3 fields jittered by 1 px so positions / 2 and / 4 fall on quarter "
             "pixels: OpenSlide resamples levels 1-2 bilinearly (pixman float pipeline) and blends "
             "seams with SATURATE; regions stay off the partly transparent outer rim")
    return _describe(folder, path, name, notes, True, regions, ["label"])


def _slide_bmp(folder, source):
    """Exported-style slide: no positions, no overlap, level-0 concat exponent 1."""
    name = "mirax-bmp-exported"
    div, iw, ih = 2, 96, 80
    images_x = images_y = 6           # original images; 3 x 3 photos
    px = py = 3
    exps = [1, 1, 1]
    W0, H0 = images_x * iw // 2, images_y * ih // 2
    crop = np.ascontiguousarray(source[2500:2500 + H0, 1000:1000 + W0])
    fill_rgb = (0xDC, 0xE6, 0xF0)
    fill = _bgr(*fill_rgb)
    missing = {(2, 0), (2, 1)}
    levels = []
    total = 0
    for k, e in enumerate(exps):
        total += e
        cc = 1 << total            # 2, 4, 8 in original images
        per = cc // div            # photos per image side: 1, 2, 4
        sw, sh = iw // per, ih // per
        out = []
        for y in range(0, images_y, cc):
            for x in range(0, images_x, cc):
                img = np.empty((ih, iw, 3), np.uint8)
                img[:] = fill_rgb
                any_photo = False
                for yi in range(per):
                    for xi in range(per):
                        c, r = x // div + xi, y // div + yi
                        if c >= px or r >= py:
                            continue
                        if (c, r) in missing:
                            any_photo = any_photo or k > 0
                            continue
                        any_photo = True
                        ph = _field(crop, c * iw, r * ih, iw, ih, c, r)
                        img[yi * sh:(yi + 1) * sh, xi * sw:(xi + 1) * sw] = downsample(ph, per)
                if any_photo:
                    out.append((y * images_x + x, _bmp(img), 0))
        levels.append(out)
    cfg = dict(slide_id="B7A3C1E5D9F24A6C8E0B2D4F6A8C0E2B", images_x=images_x, images_y=images_y, divisions=div,
               objective="20x", nfiles=1, images=levels, positions=None,
               levels=[dict(exp=e, overlap=(0, 0), mpp=0.499 * (1 << k), fill=fill, fmt="BMP24", size=(iw, ih))
                       for k, e in enumerate(exps)],
               associated={}, associated_order=[], page_size={0: 3}, loop_levels=(0,),
               mrxs=_jpeg(crop, 85))
    path = _write_slide(folder, name, cfg)
    regions = [
        ("l0-whole", 0, 0, 0, 288, 240),
        ("l0-missing-photos", 0, 160, 0, 128, 200),
        ("l1-whole", 1, 0, 0, 144, 120),
        ("l2-whole", 2, 0, 0, 72, 60),
    ]
    notes = ("BMP24 (lossless), exported style: no position record, zero overlap, 2 divisions, level-0 "
             "concat exponent 1; two missing photos show as fill colour from level 1 (one coarse image "
             "only through the unbounded positions_per_tile walk); looping next pointers")
    return _describe(folder, path, name, notes, True, regions, [])


def _refuse_slides(folder, source):
    out = []
    crop = np.ascontiguousarray(source[200:200 + 128, 200:200 + 128])
    iw = ih = 64
    posn = {(0, 0): (0, 0), (1, 0): (56, 0), (0, 1): (0, 56), (1, 1): (56, 56)}
    raw = b"".join(struct.pack("<Bii", 1, *posn[(c, r)]) for r in range(2) for c in range(2))
    lvl0 = [(r * 2 + c, _jpeg(_field(crop, *posn[(c, r)], iw, ih, c, r)), 0) for r in range(2) for c in range(2)]
    lvl1 = [(0, _jpeg(downsample(crop, 2)), 0)]
    base = dict(images_x=2, images_y=2, divisions=1, objective="20", nfiles=1,
                levels=[dict(exp=e, overlap=(8 >> k, 8 >> k), mpp=0.25 * (1 << k), fill=_bgr(255, 255, 255),
                             fmt="JPEG", size=(iw, ih)) for k, e in enumerate([0, 1])],
                associated={}, associated_order=[], mrxs=_jpeg(crop, 85))
    cases = [
        ("mirax-refuse-index-version", "Index.dat does not start with version 01.02",
         dict(index_version=b"01.03", positions=("stitching", raw), images=[lvl0, lvl1])),
        ("mirax-refuse-position-size", "the position record inflates to fewer bytes than 9 x positions",
         dict(positions=("stitching", raw), position_blob=zlib.compress(raw[:-9]), images=[lvl0, lvl1])),
        ("mirax-refuse-image-y", "a level-0 index entry's image row is past IMAGENUMBER_Y",
         dict(positions=("stitching", raw), images=[lvl0[:3] + [(12, lvl0[3][1], 0)], lvl1])),
    ]
    for i, (name, reason, extra) in enumerate(cases):
        cfg = dict(base, slide_id="%032X" % (0xA1B2C3D4E5F60718293A4B5C6D7E8F90 + i), **extra)
        path = _write_slide(folder, name, cfg)
        out.append(dict(name=name, format="mirax", path=path, notes=reason, reference="openslide",
                        refuse=reason, levels=[], regions=[], associated={}))
    return out


def make(folder, source):
    return [_slide_jpeg(folder, source), _slide_png(folder, source), _slide_subpixel(folder, source),
            _slide_bmp(folder, source)] \
        + _refuse_slides(folder, source)
