#!/usr/bin/env python3
"""Makes the test slides that the real ones in ../shared/slides lack, with reference decodes.

    python3 tools/make_test_slides.py --out DIR [--shared ../shared/slides]

Writes into DIR:
  aperio_ycbcr.svs      Aperio-style SVS: three levels (each 4x smaller) of YCbCr 4:2:0 JPEG
                        tiles, a JPEG thumbnail, an LZW label (NewSubfileType 1) and a JPEG
                        macro (NewSubfileType 9); written with tifffile.
  aperio_j2k.svs        Aperio-style SVS with JPEG 2000 tiles as Aperio's scanners write them:
                        level 0 compression 33003 (YCbCr samples, no transform in the
                        codestream, lossless), level 1 compression 33005 (RGB, lossless);
                        tiles encoded by imagecodecs (OpenJPEG) and written as they are.
  bigtiff_sparse.tiff   BigTIFF of 65536 x 40960 px whose pixel data lies past 4 GiB (a sparse
                        file: a few MB on disk); most tiles missing; Deflate + predictor on
                        level 0, LZW on level 1; written by hand here.
  ndpi_past_4gib.ndpi   the real NDPI of ../shared/slides with every strip moved past 4 GiB,
                        so offsets need NDPI's high words (only when --shared is given).
  references/*.png      what tifffile (libjpeg-turbo through imagecodecs) decodes for regions
                        of those files, and what OpenSlide reads when openslide-python is
                        installed; manifest.json lists them.

Exit code 3 when a needed Python package is missing (tests then report a skip).
"""

import argparse
import json
import os
import struct
import sys
import zlib

try:
    import numpy as np
    import tifffile
    import imagecodecs
    from PIL import Image
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"missing Python package: {e.name} (pip install tifffile imagecodecs numpy pillow)", file=sys.stderr)
    sys.exit(3)

try:
    import openslide
except ImportError:
    openslide = None

SEED = 20261125


def smooth_noise(rng, h, w, cells):
    """Smooth random field in [0, 1]: coarse noise upsampled bicubically."""
    coarse = rng.random((max(2, h // cells), max(2, w // cells))).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def he_like(rng, h, w):
    """An H&E-looking RGB image: pink stroma texture, purple nuclei, white glass."""
    tissue = smooth_noise(rng, h, w, 400) > 0.35
    eosin = 0.4 + 0.6 * smooth_noise(rng, h, w, 30)
    haem = np.zeros((h, w), np.float32)
    n = h * w // 900
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    rs = rng.integers(3, 9, n)
    yy, xx = np.mgrid[-10:11, -10:11]
    for y, x, r in zip(ys, xs, rs):
        disc = (yy * yy + xx * xx) <= r * r
        y0, y1, x0, x1 = max(0, y - 10), min(h, y + 11), max(0, x - 10), min(w, x + 11)
        haem[y0:y1, x0:x1] = np.maximum(haem[y0:y1, x0:x1], disc[y0 - y + 10:y1 - y + 10, x0 - x + 10:x1 - x + 10] * 1.2)
    od_h = np.array([0.650, 0.704, 0.286], np.float32)
    od_e = np.array([0.072, 0.990, 0.105], np.float32)
    od = haem[..., None] * od_h + (0.35 * eosin)[..., None] * od_e
    od *= tissue[..., None]
    rgb = 245.0 * np.exp(-od) + rng.normal(0, 2.0, (h, w, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def downsample(img, f):
    h, w = img.shape[0] // f, img.shape[1] // f
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BOX))


def save_png(path, rgba):
    Image.fromarray(rgba, "RGBA").save(path)


def opaque(rgb):
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def crop(rgb, x, y, w, h):
    """A region of a level's pixels with OpenSlide's semantics: transparent outside."""
    out = np.zeros((h, w, 4), np.uint8)
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x0 < x1 and y0 < y1:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = opaque(rgb[y0:y1, x0:x1])
    return out


def openslide_refs(path, regions, refdir, stem, entries, associated=()):
    if openslide is None:
        return
    s = openslide.OpenSlide(path)
    props = dict(s.properties)
    with open(os.path.join(refdir, f"{stem}.openslide.properties.json"), "w") as f:
        json.dump(props, f, indent=1, sort_keys=True)
    for name, level, x, y, w, h in regions:
        img = np.asarray(s.read_region((x, y), level, (w, h)))
        png = f"{stem}.openslide.{name}.png"
        save_png(os.path.join(refdir, png), img)
        entries.append(dict(file=os.path.basename(path), source="openslide", kind="region", name=name,
                            level=level, x=x, y=y, w=w, h=h, png="references/" + png))
    for name in associated:
        img = np.asarray(s.associated_images[name].convert("RGBA"))
        png = f"{stem}.openslide.assoc-{name}.png"
        save_png(os.path.join(refdir, png), img)
        entries.append(dict(file=os.path.basename(path), source="openslide", kind="associated", name=name,
                            png="references/" + png))


def make_aperio(out, refdir, entries):
    rng = np.random.default_rng(SEED)
    level0 = he_like(rng, 3000, 4000)
    levels = [level0, downsample(level0, 4), downsample(level0, 16)]
    thumb = downsample(level0, 8)
    label = (rng.random((300, 250, 3)) * 40 + 200).astype(np.uint8)
    macro = downsample(level0, 5)
    h0, w0 = level0.shape[:2]
    desc0 = (f"Aperio Image Library vFS90 01\r\n{w0}x{h0} [0,0 {w0}x{h0}] (256x256) JPEG/YCC Q=85"
             "|AppMag = 20|StripeWidth = 2040|ScanScope ID = FLASHSLIDE|Filename = synthetic"
             "|Date = 11/25/26|Time = 12:00:00|MPP = 0.4990|Left = 10.0|Top = 20.0")
    path = os.path.join(out, "aperio_ycbcr.svs")
    jpeg = dict(compression="jpeg", compressionargs={"level": 85}, photometric="ycbcr", subsampling=(2, 2))
    with tifffile.TiffWriter(path) as tw:
        tw.write(levels[0], tile=(256, 256), description=desc0, metadata=None, **jpeg)
        tw.write(thumb, rowsperstrip=16, description=f"Aperio Image Library vFS90 01\r\n{w0}x{h0} -> {thumb.shape[1]}x{thumb.shape[0]}",
                 metadata=None, **jpeg)
        for lv in levels[1:]:
            tw.write(lv, tile=(256, 256), description=f"Aperio Image Library vFS90 01\r\n{w0}x{h0} -> {lv.shape[1]}x{lv.shape[0]}",
                     metadata=None, **jpeg)
        tw.write(label, rowsperstrip=32, compression="lzw", predictor=2, photometric="rgb", subfiletype=1,
                 description=f"Aperio Image Library vFS90 01\r\nlabel {label.shape[1]}x{label.shape[0]}", metadata=None)
        tw.write(macro, rowsperstrip=16, subfiletype=9,
                 description=f"Aperio Image Library vFS90 01\r\nmacro {macro.shape[1]}x{macro.shape[0]}", metadata=None, **jpeg)

    # tifffile's decode (libjpeg-turbo) of each page, cropped like read_region.
    with tifffile.TiffFile(path) as tf:
        pages = [p.asarray() for p in tf.pages]
    decoded_levels = [pages[0], pages[2], pages[3]]
    regions = [
        ("L0-origin-512", 0, 0, 0, 512, 512),
        ("L0-odd", 0, 1001, 777, 333, 219),
        ("L0-edge-overhang", 0, 3900, 2900, 256, 256),
        ("L1-aligned", 1, 1024, 800, 300, 200),
        ("L2-top-full", 2, 0, 0, levels[2].shape[1], levels[2].shape[0]),
    ]
    for name, level, x, y, w, h in regions:
        ds = 4 ** level
        png = f"aperio_ycbcr.tifffile.{name}.png"
        save_png(os.path.join(refdir, png), crop(decoded_levels[level], x // ds, y // ds, w, h))
        entries.append(dict(file="aperio_ycbcr.svs", source="tifffile", kind="region", name=name, level=level,
                            x=x, y=y, w=w, h=h, png="references/" + png, lossless=False))
    for name, page in (("thumbnail", pages[1]), ("label", pages[4]), ("macro", pages[5])):
        png = f"aperio_ycbcr.tifffile.assoc-{name}.png"
        save_png(os.path.join(refdir, png), opaque(page))
        entries.append(dict(file="aperio_ycbcr.svs", source="tifffile", kind="associated", name=name,
                            png="references/" + png, lossless=name == "label"))
    openslide_refs(path, regions, refdir, "aperio_ycbcr", entries, associated=("thumbnail", "label", "macro"))


def to_ycbcr(rgb):
    """Full-range BT.601 YCbCr, as Aperio's 33003 tiles hold."""
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return np.clip(np.round(np.stack([y, cb, cr], -1)), 0, 255).astype(np.uint8)


def j2k_tiles(img, size, mct):
    """The image's tiles (edge tiles padded) as lossless JPEG 2000 codestreams."""
    h, w = img.shape[:2]
    for y in range(0, h, size):
        for x in range(0, w, size):
            tile = np.zeros((size, size, 3), np.uint8)
            part = img[y:y + size, x:x + size]
            tile[:part.shape[0], :part.shape[1]] = part
            yield imagecodecs.jpeg2k_encode(tile, codecformat="J2K", reversible=True, mct=mct)


def make_aperio_j2k(out, refdir, entries):
    rng = np.random.default_rng(SEED + 7)
    level0 = he_like(rng, 1100, 1500)
    level1 = downsample(level0, 4)
    h0, w0 = level0.shape[:2]
    desc0 = (f"Aperio Image Library v12.0.15\r\n{w0}x{h0} [0,0 {w0}x{h0}] (240x240) J2K/YUV16 Q=70"
             "|AppMag = 40|MPP = 0.2520|ScanScope ID = FLASHSLIDE|Filename = synthetic-j2k")
    path = os.path.join(out, "aperio_j2k.svs")
    with tifffile.TiffWriter(path) as tw:
        tw.write(j2k_tiles(to_ycbcr(level0), 240, mct=False), shape=level0.shape, dtype="uint8", tile=(240, 240),
                 compression=33003, photometric="rgb", description=desc0, metadata=None)
        h1, w1 = level1.shape[:2]
        tw.write(j2k_tiles(level1, 240, mct=True), shape=level1.shape, dtype="uint8", tile=(240, 240),
                 compression=33005, photometric="rgb", metadata=None,
                 description=f"Aperio Image Library v12.0.15\r\n{w0}x{h0} -> {w1}x{h1}")
    regions = [
        ("L0-origin-512", 0, 0, 0, 512, 512),
        ("L0-odd", 0, 601, 377, 333, 219),
        ("L0-edge-overhang", 0, 1400, 1000, 256, 256),
        ("L1-top-full", 1, 0, 0, level1.shape[1], level1.shape[0]),
    ]
    # The source pixels are the reference of the lossless RGB level; OpenSlide's of both.
    png = "aperio_j2k.source.L1-top-full.png"
    save_png(os.path.join(refdir, png), opaque(level1))
    entries.append(dict(file="aperio_j2k.svs", source="source", kind="region", name="L1-top-full", level=1,
                        x=0, y=0, w=level1.shape[1], h=level1.shape[0], png="references/" + png, lossless=True))
    openslide_refs(path, regions, refdir, "aperio_j2k", entries)


# ---- BigTIFF past 4 GiB, written by hand -------------------------------------------------

def tile_pixels(level, col, row, size):
    """Deterministic content of one tile: gradients with a per-tile colour and fine detail."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.int64)
    r = (xx + 3 * col + 7 * level) % 256
    g = (yy + 5 * row) % 256
    b = ((xx * yy) // 64 + 11 * (col + row)) % 256
    return np.dstack([r, g, b]).astype(np.uint8)


def present(level, col, row):
    """Which tiles exist: a diagonal band and a sparse grid; the rest are missing."""
    return col == 2 * row or (col % 16 == 0 and row % 16 == 0) or (level == 1 and row == 0 and col < 8)


def horizontal_difference(tile):
    d = tile.astype(np.int16).copy()
    d[:, 1:] -= tile[:, :-1].astype(np.int16)
    return (d % 256).astype(np.uint8)


def make_bigtiff(out, refdir, entries):
    path = os.path.join(out, "bigtiff_sparse.tiff")
    T = 512
    specs = [  # (level, width, height, compression, predictor, new_subfile_type)
        (0, 65536, 40960, 8, 2, 0),
        (1, 32768, 20480, 5, 1, 1),
    ]
    data_start = (1 << 32) + 4096 * 3 + 17  # deliberately past 4 GiB and unaligned
    with open(path, "wb") as f:
        f.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 16))
        pos = data_start
        ifds = []
        for level, W, H, comp, pred, nst in specs:
            across, down = W // T, H // T
            offsets, counts = [0] * (across * down), [0] * (across * down)
            for row in range(down):
                for col in range(across):
                    if not present(level, col, row):
                        continue
                    tile = tile_pixels(level, col, row, T)
                    raw = (horizontal_difference(tile) if pred == 2 else tile).tobytes()
                    data = zlib.compress(raw, 6) if comp == 8 else imagecodecs.lzw_encode(raw)
                    f.seek(pos)
                    f.write(data)
                    offsets[row * across + col] = pos
                    counts[row * across + col] = len(data)
                    pos += len(data)
            ifds.append((level, W, H, comp, pred, nst, offsets, counts))
        # Directories and their arrays right after the header.
        at = 16
        ifd_offsets = []
        blobs = []
        for level, W, H, comp, pred, nst, offsets, counts in ifds:
            off_arr = at + 0
            cnt_arr = off_arr + 8 * len(offsets)
            ifd_at = cnt_arr + 8 * len(counts)
            entries_ = [
                (254, 16, 1, struct.pack("<Q", nst)),
                (256, 16, 1, struct.pack("<Q", W)),
                (257, 16, 1, struct.pack("<Q", H)),
                (258, 3, 3, struct.pack("<HHHH", 8, 8, 8, 0)),
                (259, 3, 1, struct.pack("<HHHH", comp, 0, 0, 0)),
                (262, 3, 1, struct.pack("<HHHH", 2, 0, 0, 0)),
                (277, 3, 1, struct.pack("<HHHH", 3, 0, 0, 0)),
                (282, 5, 1, struct.pack("<II", 40000 >> level, 1)),
                (283, 5, 1, struct.pack("<II", 40000 >> level, 1)),
                (284, 3, 1, struct.pack("<HHHH", 1, 0, 0, 0)),
                (296, 3, 1, struct.pack("<HHHH", 3, 0, 0, 0)),
                (317, 3, 1, struct.pack("<HHHH", pred, 0, 0, 0)),
                (322, 3, 1, struct.pack("<HHHH", T, 0, 0, 0)),
                (323, 3, 1, struct.pack("<HHHH", T, 0, 0, 0)),
                (324, 16, len(offsets), struct.pack("<Q", off_arr)),
                (325, 16, len(counts), struct.pack("<Q", cnt_arr)),
            ]
            ifd = struct.pack("<Q", len(entries_))
            for tag, typ, count, value in entries_:
                ifd += struct.pack("<HHQ", tag, typ, count) + value
            next_at_field = len(ifd)
            ifd += struct.pack("<Q", 0)
            blobs.append([off_arr, struct.pack(f"<{len(offsets)}Q", *offsets) + struct.pack(f"<{len(counts)}Q", *counts),
                          ifd_at, bytearray(ifd), next_at_field])
            ifd_offsets.append(ifd_at)
            at = ifd_at + len(ifd)
        assert at < data_start
        for i, (arr_at, arr, ifd_at, ifd, next_field) in enumerate(blobs):
            nxt = ifd_offsets[i + 1] if i + 1 < len(blobs) else 0
            ifd[next_field:next_field + 8] = struct.pack("<Q", nxt)
            f.seek(arr_at)
            f.write(arr)
            f.seek(ifd_at)
            f.write(bytes(ifd))
        f.seek(8)
        f.write(struct.pack("<Q", ifd_offsets[0]))
    assert os.path.getsize(path) > (1 << 32)

    # Reference: tifffile decodes the tiles (its own reading of BigTIFF offsets, predictor,
    # Deflate and LZW); regions are composed from them, missing tiles transparent.
    regions = [
        ("L0-diagonal", 0, 2 * T - 100, T - 50, 700, 600),
        ("L0-far", 0, 126 * T + 11, 63 * T + 5, 1000, 700),
        ("L0-missing", 0, 40 * T, 2 * T, 300, 300),
        ("L1-band", 1, 0, 0, 1500, 800),
    ]
    with tifffile.TiffFile(path) as tf:
        fh = tf.filehandle
        for name, level, x, y, w, h in regions:
            page = tf.pages[level]
            ds = 2 ** level
            lx, ly = x // ds, y // ds
            across = page.imagewidth // T
            region = np.zeros((h, w, 4), np.uint8)
            for row in range(ly // T, (ly + h - 1) // T + 1):
                for col in range(lx // T, (lx + w - 1) // T + 1):
                    i = row * across + col
                    if page.databytecounts[i] == 0:
                        continue
                    fh.seek(page.dataoffsets[i])
                    seg, _, _ = page.decode(fh.read(page.databytecounts[i]), i)
                    tile = np.asarray(seg).reshape(T, T, 3)
                    assert np.array_equal(tile, tile_pixels(level, col, row, T)), "tifffile disagrees with the writer"
                    tx, ty = col * T - lx, row * T - ly
                    y0, y1, x0, x1 = max(0, ty), min(h, ty + T), max(0, tx), min(w, tx + T)
                    region[y0:y1, x0:x1] = opaque(tile[y0 - ty:y1 - ty, x0 - tx:x1 - tx])
            png = f"bigtiff_sparse.tifffile.{name}.png"
            save_png(os.path.join(refdir, png), region)
            entries.append(dict(file="bigtiff_sparse.tiff", source="tifffile", kind="region", name=name, level=level,
                                x=x, y=y, w=w, h=h, png="references/" + png, lossless=True))
    openslide_refs(path, regions, refdir, "bigtiff_sparse", entries)


# ---- NDPI moved past 4 GiB ------------------------------------------------------------------

NDPI_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def read_ndpi_directories(data):
    """(tag, type, count, value bytes) of every directory of an NDPI file under 4 GiB."""
    (first,) = struct.unpack_from("<Q", data, 4)
    dirs, at = [], first
    while at:
        (n,) = struct.unpack_from("<H", data, at)
        entries = []
        for i in range(n):
            tag, typ, count, value = struct.unpack_from("<HHII", data, at + 2 + 12 * i)
            size = NDPI_TYPES[typ] * count
            if size <= 4 and typ != 2:
                raw = struct.pack("<I", value)[:size]
            else:
                raw = data[value:value + size]
            entries.append((tag, typ, count, raw))
        (at,) = struct.unpack_from("<Q", data, at + 2 + 12 * n)
        dirs.append(entries)
    return dirs


def make_ndpi(out, shared, entries):
    src = os.path.join(shared, "hamamatsu", "test3-DAPI-2-387.ndpi")
    data = open(src, "rb").read()
    dirs = read_ndpi_directories(data)
    path = os.path.join(out, "ndpi_past_4gib.ndpi")
    strip_at = (1 << 32) + 1000
    with open(path, "wb") as f:
        f.write(b"II*\x00" + struct.pack("<Q", 0))
        pos = 12
        ifd_positions = []
        for entries_ in dirs:
            fields = {tag: (typ, count, raw) for tag, typ, count, raw in entries_}
            strip_offset = struct.unpack("<I", fields[273][2])[0]
            strip_len = struct.unpack("<I", fields[279][2])[0]
            f.seek(strip_at)
            f.write(data[strip_offset:strip_offset + strip_len])
            new_strip = strip_at
            strip_at += strip_len + 7
            # Out-of-line values first, then the directory with its high words.
            packed = []
            for tag, typ, count, raw in entries_:
                if tag == 273:
                    packed.append((tag, 4, 1, new_strip & 0xFFFFFFFF, new_strip >> 32))
                elif len(raw) <= 4 and typ != 2:
                    packed.append((tag, typ, count, struct.unpack("<I", raw.ljust(4, b"\0"))[0], 0))
                else:
                    f.seek(pos)
                    f.write(raw)
                    packed.append((tag, typ, count, pos, 0))
                    pos += len(raw) + (len(raw) & 1)
            ifd_positions.append(pos)
            ifd = struct.pack("<H", len(packed))
            for tag, typ, count, low, _ in packed:
                ifd += struct.pack("<HHII", tag, typ, count, low)
            ifd += struct.pack("<Q", 0)  # next directory, patched below
            ifd += b"".join(struct.pack("<I", high) for *_, high in packed)
            f.seek(pos)
            f.write(ifd)
            pos += len(ifd)
        assert pos < (1 << 32)
        for i, at in enumerate(ifd_positions):
            n = len(dirs[i])
            f.seek(at + 2 + 12 * n)
            f.write(struct.pack("<Q", ifd_positions[i + 1] if i + 1 < len(ifd_positions) else 0))
        f.seek(4)
        f.write(struct.pack("<Q", ifd_positions[0]))
    assert os.path.getsize(path) > (1 << 32)
    entries.append(dict(file="ndpi_past_4gib.ndpi", source="same-as", kind="file",
                        name="hamamatsu/test3-DAPI-2-387.ndpi"))
    regions = [("L0-centre-512", 0, 1728, 2176, 512, 512), ("L3-aligned", 3, 800, 1600, 200, 150)]
    openslide_refs(path, regions, os.path.join(out, "references"), "ndpi_past_4gib", entries, associated=("macro",))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", help="../shared/slides, for the NDPI relocation")
    args = ap.parse_args()
    refdir = os.path.join(args.out, "references")
    os.makedirs(refdir, exist_ok=True)
    entries = []
    make_aperio(args.out, refdir, entries)
    make_aperio_j2k(args.out, refdir, entries)
    make_bigtiff(args.out, refdir, entries)
    if args.shared and os.path.isfile(os.path.join(args.shared, "hamamatsu", "test3-DAPI-2-387.ndpi")):
        make_ndpi(args.out, args.shared, entries)
    manifest = dict(tifffile=tifffile.__version__, imagecodecs=imagecodecs.__version__,
                    openslide=getattr(openslide, "__library_version__", None) if openslide else None,
                    entries=entries)
    tmp = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(args.out, "manifest.json"))
    print(f"wrote {len(entries)} references to {args.out}")


if __name__ == "__main__":
    main()
