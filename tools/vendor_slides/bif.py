"""Ventana / Roche BIF test slides (and one Ventana TIFF), as OpenSlide 4.0.1 reads them.

A BIF is a BigTIFF. Directory 0 is the slide photograph ("Label_Image" or "Label Image",
OpenSlide's associated image `macro`) and carries the scanner's XMP (tag 700, BYTE): an `iScan`
element whose attributes become `ventana.*` properties. Pyramid levels are tiled JPEG
directories described "level=N mag=M quality=Q"; only level 0 has a second XMP, the
`EncodeInfo` stitching record: per AOI an `ImageInfo` (tile size, NumCols/NumRows, Pos-X/Pos-Y,
AOIScanned) with `TileJointInfo` joints (FlagJoined, Confidence, Direction RIGHT/UP, Tile1,
Tile2, OverlapX, OverlapY) and, paired by position, a child of `AoiOrigin` (OriginX/OriginY:
where the AOI's fields start in the stored tile grid, in pixels). Fields (the scanner's camera
frames) are stored row by row from the top in a grid of whole tiles; joints number them 1-based
in a serpentine from the bottom left (bottom row left to right, the row above right to left,
...); a RIGHT joint names the left field Tile1, an UP joint the lower field Tile1.
OpenSlide does not place each field by its own joints: it takes the confidence-weighted mean
OverlapX of all RIGHT joints and mean OverlapY of all UP joints of all AOIs (whatever
FlagJoined says), so every field lies on one grid whose advance is the tile size less that
mean; an AOI's fields start at (Pos-X, its Pos-Y turned into a distance from the top). A level
k > 0 stores each level-0 field shrunk by the level's downsample ds, packed ds x ds to a stored
tile, and OpenSlide places these pieces on the same grid divided by ds. Where fields overlap,
the field of the highest row, then the highest column shows: OpenSlide paints bottom-right
first with cairo's SATURATE operator, which keeps what is already opaque; at fractional
positions cairo samples the field bilinearly (pixman's float path; details in
composite_saturate) and the partly covered pixels of two fields add up.

The fields come from tools/slide_refs.camera_fields (tinted -24/0/+24, so which field shows is
visible), each moved by a seeded offset of up to 2 px besides camera_fields' own jitter; each
joint's overlaps are the true ones of its two fields, so they differ joint by joint, and the
confidences are chosen (seeded) so that the weighted means are what each slide wants.
Truth (`levels`): this module's own decode of the written file by the rules above (tiles
decoded by imagecodecs / libjpeg-turbo as OpenSlide's direct JPEG path does, composited in
float32 as pixman does); mask False where no field lies. Every level is laid out so that
pixels are either covered or not (no partly covered pixels at the outer edges).

Slides (pixels: crops of `source`, real tissue; JPEG q90, YCbCr 4:2:0):

bif-stitched.bif   one AOI of 6 x 4 fields of 256 x 320; RIGHT joints' OverlapX 18..30,
                   confidences 40..100, UP joints' OverlapY 20..27, confidences 84..100, weighted
                   means exactly 24 and 24 (advance 232 x 296, whole pixels at every level).
                   Unweighted means (24.2, 22.7) and FlagJoined-only means differ: the 6th joint (UP)
                   has Confidence 0 and overlaps 0, the 9th (RIGHT) is unjoined with confidence
                   40 and an OverlapX 4 too large, the 14th (UP) is unjoined; all still count by
                   their confidence. Levels mag 20/10/5/2.5 (downsamples 1, 2, 4, 8): 1416x1208,
                   708x604, 354x302, 177x151; stored grids 6x4, 3x2, 2x1, 1x1 (at levels 2 and
                   3 stored tiles reach past ImageWidth: clipped, nothing lies there). Dir 0 "Label_Image" (single-tile JPEG,
                   208x624 portrait photo with the printed label at the top) -> `macro`; dir 1
                   "Thumbnail" (single JPEG tile of 192x160 for a 177x151 image) ->
                   `thumbnail`; dirs 2-5 the levels. iScan is the XMP root (Magnification 20,
                   ScanRes 0.499; SlideAnnotation="" is not a property; a NUL ends the packet).
                   Pos-X = Pos-Y = 0, origin 0.
bif-subpixel.bif   one AOI of 6 x 6 fields of 256 x 224; OverlapX 21..32, OverlapY 16..23,
                   confidences 84..100, weighted means 25.6 and 19.2: advance 230.4 x 204.8, so
                   fields land at fractional positions at every level (bilinear sampling, seams
                   mixing two fields); the outer edges stay whole (1408 = 5 x 230.4 + 256,
                   1248 = 5 x 204.8 + 224). Levels mag 40/20/10/5: 1408x1248, 704x624, 352x312,
                   176x156. "Label_Image" (JPEG) -> `macro`, "Thumbnail" (JPEG) -> `thumbnail`.
                   Magnification 40, ScanRes 0.2325 (mpp "0.23250000000000001").
bif-two-aoi.bif    three AOIs in EncodeInfo, the middle one AOIScanned="0" (skipped, its empty
                   Pos-X/Pos-Y and zero sizes never read); fields 240 x 224, advance 220 x 204:
                   the mean overlaps are 20 / 20 over both scanned AOIs together, not per AOI
                   (AOI 0: 19.99 / 20.03, AOI 2: 20.01 / 19.98). AOI 0: 3 x 2 fields at stored
                   tiles (0, 0), Pos-X "16.000000", Pos-Y "700.000000" (floating point, as some
                   scanners write them), the topmost (y 0); AOI 2: 2 x 3 fields at stored tiles
                   (4, 2), Pos-X 904, Pos-Y 56 (from the bottom) -> y 440. Stored level-0 grid
                   6 x 5 with white fields where no AOI is. OpenSlide paints AOI 2 at x 904,
                   y 440 although openslide.region[1] says x 880, y 408 (start column x
                   advance). Levels mag 20/10/5: 1364x1072, 682x536, 341x268; transparent left
                   of x 16 and between the AOIs. Dir 0 "Label Image" (uncompressed RGB strips)
                   -> `macro`, dir 1 "Probability_Image" (8-bit LZW; ignored by OpenSlide),
                   dirs 2-4 the levels; iScan inside a Metadata root, ScannerModel given.
ventana-plain.tif  Ventana TIFF: the same directories but level 0 has no XMP, so no EncodeInfo,
                   overlaps or AOIs: each level a plain grid of its stored 256 x 256 tiles (the
                   last row and column cut by ImageWidth/ImageLength). Levels mag 40/20/10/5:
                   1500x1200, 750x600, 375x300, 187x150 (box averages). "Label_Image" (JPEG)
                   -> `macro`, "Thumbnail" (JPEG) -> `thumbnail`. Magnification 40, ScanRes
                   0.2495.
bif-dp200.bif      refused: a VENTANA DP 200-style BIF (2 x 2 fields, one level) whose joint of
                   the right-to-left row says Direction="LEFT"; OpenSlide 4.0.1 knows only RIGHT
                   and UP ('Bad direction attribute "LEFT"').

Every region and associated image of these slides is identical to OpenSlide 4.0.1's pixels.
"""

import math
import os
from fractions import Fraction
import xml.etree.ElementTree as ET

import imagecodecs
import numpy as np
import tifffile

from slide_refs import camera_fields, downsample, label_image, overview_image

SOFTWARE = "ScanOutputManager 1.1.0.15854"
QUALITY = 90
ISCAN_COMMON = [("BuildDate", "10/13/2011 3:14:05 PM"), ("BuildVersion", "3.3.1.1"),
                ("FocusMode", "0"), ("FocusQuality", "3"), ("LabelBoundary", "1000")]


# --------------------------------------------------------------------------- geometry


def serpentine_number(col, row, across, down):
    """1-based joint number of the field at (col, row) (row counted from the top): rows are
    numbered from the bottom, every second one (from the bottom) right to left."""
    rb = down - 1 - row
    c = col if rb % 2 == 0 else across - 1 - col
    return rb * across + c + 1


def area_joints(corners, across, down, tw, th, scan_left=False):
    """The joints of one AOI in scan order (serpentine from the bottom left), overlaps from the
    fields' true corners. RIGHT: Tile1 the left field, Tile2 the right one; UP: Tile1 the lower
    field, Tile2 the upper one. OverlapX of a RIGHT joint / OverlapY of an UP joint is how far
    the two fields overlap; the other value is the sideways shift of Tile2 against Tile1.
    With scan_left, joints of right-to-left rows are written LEFT (Tile1 the right field)."""
    out = []
    for rb in range(down):
        row = down - 1 - rb
        cols = range(across) if rb % 2 == 0 else range(across - 1, -1, -1)
        for col in cols:
            # joint to the previous field of this row in scan order
            prev = col - 1 if rb % 2 == 0 else col + 1
            if 0 <= prev < across:
                a, b = (prev, col) if prev < col else (col, prev)  # a left of b
                (xa, ya), (xb, yb) = corners[(a, row)], corners[(b, row)]
                j = dict(Direction="RIGHT", Tile1=serpentine_number(a, row, across, down),
                         Tile2=serpentine_number(b, row, across, down),
                         OverlapX=tw - (xb - xa), OverlapY=yb - ya, axis="x")
                if scan_left and rb % 2 == 1:
                    j.update(Direction="LEFT", Tile1=j["Tile2"], Tile2=j["Tile1"])
                out.append(j)
            if rb > 0:  # joint to the field below
                (xl, yl), (xu, yu) = corners[(col, row + 1)], corners[(col, row)]
                out.append(dict(Direction="UP", Tile1=serpentine_number(col, row + 1, across, down),
                                Tile2=serpentine_number(col, row, across, down),
                                OverlapX=xu - xl, OverlapY=th - (yl - yu), axis="y"))
    return out


def balance_confidences(joints, mean_x, mean_y, rng, lo=84, hi=100):
    """Confidences for the joints (those with a preset 'Confidence' keep it) such that the
    confidence-weighted mean OverlapX of the RIGHT joints is exactly mean_x and that of
    OverlapY of the UP joints mean_y (Fractions; OpenSlide's advance is the tile size less
    these means, so they fix where every field lands)."""
    for axis, mean, key in (("x", Fraction(mean_x), "OverlapX"), ("y", Fraction(mean_y), "OverlapY")):
        dev = lambda j: j[key] * mean.denominator - mean.numerator  # noqa: E731
        free = [j for j in joints if j["axis"] == axis and "Confidence" not in j]
        fixed = sum(j["Confidence"] * dev(j) for j in joints if j["axis"] == axis and "Confidence" in j)
        devs = [dev(j) for j in free]
        for _ in range(2000):
            conf = [int(c) for c in rng.integers(88, hi + 1, len(free))]
            s = fixed + sum(c * d for c, d in zip(conf, devs))
            while s:
                best = None
                for i, d in enumerate(devs):
                    for step in (-1, 1):
                        if d and lo <= conf[i] + step <= hi and abs(s + step * d) < abs(s):
                            if best is None or abs(s + step * d) < best[0]:
                                best = (abs(s + step * d), i, step)
                if best is None:
                    break
                conf[best[1]] += best[2]
                s += best[2] * devs[best[1]]
            if s == 0:
                break
        else:
            raise RuntimeError("no confidences give the wanted mean overlap")
        for j, c in zip(free, conf):
            j["Confidence"] = c


# --------------------------------------------------------------------------- XML


def attrs(pairs):
    return " ".join(f'{k}="{v}"' for k, v in pairs)


def iscan_xml(extra, aois, root_metadata=False, nul=False):
    body = f"<iScan {attrs(ISCAN_COMMON + extra)}>" + "".join(
        f"<AOI{i} {attrs(a)}/>" for i, a in enumerate(aois)) + "</iScan>"
    if root_metadata:
        body = f"<Metadata>{body}</Metadata>"
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode() + (b"\0" if nul else b"")


def encode_info_xml(infos):
    """infos: dicts with the ImageInfo attributes (list of pairs), joints, origin (pairs)."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<EncodeInfo Ver="2">',
             '<SlideInfo><AoiInfo Count="%d"/></SlideInfo><SlideStitchInfo>' % len(infos)]
    for info in infos:
        parts.append(f"<ImageInfo {attrs(info['attrs'])}>")
        for j in info["joints"]:
            parts.append("<TileJointInfo " + attrs([
                ("FlagJoined", j.get("FlagJoined", 1)), ("Confidence", j["Confidence"]),
                ("Direction", j["Direction"]), ("Tile1", j["Tile1"]), ("Tile2", j["Tile2"]),
                ("OverlapX", j["OverlapX"]), ("OverlapY", j["OverlapY"])]) + "/>")
        parts.append("</ImageInfo>")
    parts.append("</SlideStitchInfo><AoiOrigin>")
    for i, info in enumerate(infos):
        parts.append(f"<AOI{i} {attrs(info['origin'])}/>")
    parts.append("</AoiOrigin></EncodeInfo>")
    return "\n".join(parts).encode()


def xmp_tag(data):
    return [(700, 1, len(data), data, True)]  # BYTE, as the scanners write it


# --------------------------------------------------------------------------- writing


def write_jpeg_level(tif, tiles, across, down, tw, th, width, height, description, extratags=()):
    blank = np.full((th, tw, 3), 255, np.uint8)
    tif.write((tiles.get((c, r), blank) for r in range(down) for c in range(across)),
              shape=(height, width, 3), dtype=np.uint8, tile=(th, tw), compression="jpeg",
              compressionargs={"level": QUALITY}, photometric="rgb", description=description,
              metadata=None, software=SOFTWARE, extratags=list(extratags))


def write_single_tile_jpeg(tif, rgb, description, extratags=()):
    h, w = rgb.shape[:2]
    tif.write(rgb, tile=(-(-h // 16) * 16, -(-w // 16) * 16), compression="jpeg",
              compressionargs={"level": QUALITY}, photometric="rgb", description=description,
              metadata=None, software=SOFTWARE, extratags=list(extratags))


def write_raw(tif, img, description, compression=None, extratags=()):
    tif.write(img, rowsperstrip=64, compression=compression, description=description,
              photometric="rgb" if img.ndim == 3 else "minisblack", metadata=None,
              software=SOFTWARE, extratags=list(extratags))


def pyramid_tiles(fields, ds, tw, th):
    """Stored tiles of a BIF level of downsample ds: each level-0 field (col, row) shrunk by ds
    (box) and put at ((col % ds) * tw / ds, (row % ds) * th / ds) of stored tile
    (col // ds, row // ds); white where no field is."""
    sw, sh = tw // ds, th // ds
    out = {}
    for (c, r), t in fields.items():
        tile = out.setdefault((c // ds, r // ds), np.full((th, tw, 3), 255, np.uint8))
        tile[(r % ds) * sh:(r % ds + 1) * sh, (c % ds) * sw:(c % ds + 1) * sw] = downsample(t, ds)
    return out


# --------------------------------------------------------------------------- decoding


def read_tile(tif, page, c, r):
    """Decoded stored tile (c, r) of a tiled JPEG page, and which of its pixels lie inside the
    image (OpenSlide clips the rest to transparent)."""
    across = -(-page.imagewidth // page.tilewidth)
    i = r * across + c
    tif.filehandle.seek(page.dataoffsets[i])
    data = tif.filehandle.read(page.databytecounts[i])
    rgb = imagecodecs.jpeg8_decode(data, tables=page.jpegtables)
    valid = np.zeros(rgb.shape[:2], bool)
    valid[:max(0, page.imagelength - r * page.tilelength), :max(0, page.imagewidth - c * page.tilewidth)] = True
    return rgb, valid


F32 = np.float32
INV255 = F32(1.0) / F32(255.0)


def composite_saturate(canvas, rgba, x, y):
    """Composite one tile (premultiplied RGBA uint8) whose top-left corner lies at (x, y) (level
    pixels, possibly fractional) onto canvas (premultiplied RGBA uint8) as OpenSlide's cairo /
    pixman do it: cairo operator SATURATE, which makes pixman take its floating-point path.
    Samples: value / 255 in float32; at a whole-pixel position the tile's own pixels, else
    bilinear interpolation at the 16.16 fixed-point source coordinate of each pixel centre
    (outside the tile: transparent). Result per channel min(1, s * fa + d) with
    fa = min(1, (1 - da) / sa) (1 where sa is 0), stored as floor(v * 256) less one at 256."""
    H, W = canvas.shape[:2]
    h, w = rgba.shape[:2]
    if x == int(x) and y == int(y):
        x0, y0 = int(x), int(y)
        bx0, by0, bx1, by1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
        if bx0 >= bx1 or by0 >= by1:
            return
        src = rgba[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0].astype(F32) * INV255
    else:
        bx0, by0 = max(math.floor(x) - 1, 0), max(math.floor(y) - 1, 0)
        bx1, by1 = min(math.ceil(x + w) + 1, W), min(math.ceil(y + h) + 1, H)
        if bx0 >= bx1 or by0 >= by1:
            return

        def axis(first, n, t):
            # source coordinate of each pixel centre, less half a pixel, in 16.16 fixed point
            v = np.array([((i << 16) + 0x8000 + int(round(-t * 65536))) - 0x8000
                          for i in range(first, first + n)], np.int64)
            return v >> 16, (v & 0xFFFF).astype(F32) / F32(65536.0)

        ix, dx = axis(bx0, bx1 - bx0, x)
        iy, dy = axis(by0, by1 - by0, y)
        pad = np.zeros((h + 2, w + 2, 4), F32)
        pad[1:-1, 1:-1] = rgba.astype(F32) * INV255

        def px(oy, ox):
            return pad[np.clip(iy + oy + 1, 0, h + 1)[:, None], np.clip(ix + ox + 1, 0, w + 1)[None, :]]

        DX, DY = dx[None, :, None], dy[:, None, None]
        one = F32(1.0)
        src = px(0, 0) * ((one - DX) * (one - DY)) + px(0, 1) * (DX * (one - DY))
        src = src + px(1, 0) * ((one - DX) * DY)
        src = src + px(1, 1) * (DX * DY)
    d = canvas[by0:by1, bx0:bx1].astype(F32) * INV255
    sa, da = src[..., 3:4], d[..., 3:4]
    tiny = np.finfo(np.float32).tiny
    zero = (sa > -tiny) & (sa < tiny)
    one = F32(1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        fa = np.where(zero, one, np.clip((one - da) / np.where(zero, one, sa), 0, 1))
    v = np.minimum(F32(1.0), src * fa.astype(F32) + d)
    u = (np.clip(v, 0, 1) * F32(256.0)).astype(np.uint32)
    canvas[by0:by1, bx0:bx1] = (u - (u >> 8)).astype(np.uint8)


def unpremultiply(canvas):
    """RGB and coverage of a premultiplied canvas: openslide-python's conversion (c * 255 // a);
    every generated slide is laid out so that alpha is only 0 or 255."""
    a = canvas[..., 3].astype(np.int64)
    assert np.isin(a, (0, 255)).all(), "partial coverage in a level"
    return np.ascontiguousarray(canvas[..., :3]), a == 255


def parse_levels(tif):
    levels, assoc = [], {}
    for i, page in enumerate(tif.pages):
        desc = page.description
        if "level=" in desc:
            kv = dict(p.split("=", 1) for p in desc.split(" ") if "=" in p)
            levels.append((int(kv["level"]), float(kv["mag"]), i))
        elif desc in ("Label Image", "Label_Image"):
            assoc["macro"] = i
        elif desc == "Thumbnail":
            assoc["thumbnail"] = i
    assert [lv[0] for lv in levels] == list(range(len(levels)))
    return levels, assoc


def stitch_model(xml, tw, th):
    """OpenSlide's reading of EncodeInfo: (advance_x, advance_y, areas) with areas as dicts
    x, y (top-based), start_col, start_row, across, down."""
    root = ET.fromstring(xml.rstrip(b"\0"))
    infos = root.findall("./SlideStitchInfo/ImageInfo")
    origins = list(root.find("./AoiOrigin"))
    assert len(infos) == len(origins)
    areas, tot = [], {"x": [0.0, 0], "y": [0.0, 0]}
    for info, origin in zip(infos, origins):
        if not int(info.get("AOIScanned")):
            continue
        assert (int(info.get("Width")), int(info.get("Height"))) == (tw, th)
        ox, oy = int(origin.get("OriginX")), int(origin.get("OriginY"))
        assert ox % tw == 0 and oy % th == 0
        a = dict(start_col=ox // tw, start_row=oy // th, across=int(info.get("NumCols")),
                 down=int(info.get("NumRows")), x=int(float(info.get("Pos-X"))),
                 y=int(float(info.get("Pos-Y"))))
        areas.append(a)
        for j in info.findall("TileJointInfo"):
            conf = int(j.get("Confidence"))
            if j.get("Direction") == "RIGHT":
                tot["x"][0] += conf * -float(j.get("OverlapX"))
                tot["x"][1] += conf
            else:
                assert j.get("Direction") == "UP"
                tot["y"][0] += conf * -float(j.get("OverlapY"))
                tot["y"][1] += conf
    adv_x = tw + tot["x"][0] / tot["x"][1]
    adv_y = th + tot["y"][0] / tot["y"][1]
    heights = [int((a["down"] - 1) * adv_y + th) for a in areas]
    top = max(0, max(a["y"] + h for a, h in zip(areas, heights)))
    for a, h in zip(areas, heights):
        a["y"] = top - a["y"] - h
    return adv_x, adv_y, areas


def decode_bif(path):
    """Every level of a BIF (or Ventana TIFF) as OpenSlide 4.0.1 composes it: [(rgb, mask)],
    and the associated images decoded."""
    out = []
    with tifffile.TiffFile(path) as tif:
        levels, assoc = parse_levels(tif)
        p0 = tif.pages[levels[0][2]]
        tw, th = p0.tilewidth, p0.tilelength
        xmp = p0.tags.get(700)
        model = stitch_model(xmp.value, tw, th) if xmp is not None else None
        for _, mag, i in levels:
            page = tif.pages[i]
            ds = levels[0][1] / mag
            if model is None:  # Ventana TIFF: a plain grid of the stored tiles
                canvas = np.zeros((page.imagelength, page.imagewidth, 4), np.uint8)
                for r in range(-(-page.imagelength // th)):
                    for c in range(-(-page.imagewidth // tw)):
                        rgb, valid = read_tile(tif, page, c, r)
                        composite_saturate(canvas, np.dstack([rgb * valid[..., None], valid * 255]).astype(np.uint8),
                                           c * tw, r * th)
                out.append(unpremultiply(canvas))
                continue
            adv_x, adv_y, areas = model
            spt = int(ds)                       # level-0 fields per stored tile and axis
            sw, sh = tw / ds, th / ds           # a field's size on this level
            gx, gy = adv_x / ds, adv_y / ds     # the grid's advance on this level
            tiles = {}  # (col, row) -> (x, y); a later area's field replaces an earlier one's
            left = top = math.inf
            right = bottom = -math.inf
            for a in areas:
                offx = (a["x"] - a["start_col"] * adv_x) / ds
                offy = (a["y"] - a["start_row"] * adv_y) / ds
                for row in range(a["start_row"], a["start_row"] + a["down"]):
                    for col in range(a["start_col"], a["start_col"] + a["across"]):
                        x, y = col * gx + offx, row * gy + offy
                        tiles[(col, row)] = (x, y)
                        left, top = min(left, x), min(top, y)
                        right, bottom = max(right, x + sw), max(bottom, y + sh)
            canvas = np.zeros((math.ceil(top + (bottom - top)), math.ceil(left + (right - left)), 4), np.uint8)
            assert sw == int(sw) and sh == int(sh), "fields must shrink to whole pixels"
            sw, sh = int(sw), int(sh)
            cache = {}
            for (col, row) in sorted(tiles, key=lambda k: (k[1], k[0]), reverse=True):  # paint order
                key = (col // spt, row // spt)
                if key not in cache:
                    rgb, valid = read_tile(tif, page, *key)
                    cache[key] = np.dstack([rgb * valid[..., None], valid * 255]).astype(np.uint8)
                sx, sy = col % spt * sw, row % spt * sh
                composite_saturate(canvas, cache[key][sy:sy + sh, sx:sx + sw], *tiles[(col, row)])
            out.append(unpremultiply(canvas))
        associated = {}
        for name, i in assoc.items():
            page = tif.pages[i]
            associated[name] = (page.asarray(), page.compression == 1)
    return out, associated


# --------------------------------------------------------------------------- slides


def macro_image(full, text, barcode):
    """Ventana's Label_Image: a portrait photo of the glass, label at the top."""
    label = label_image(text, barcode, 240, 208)
    return np.ascontiguousarray(np.rot90(overview_image(full, label, 624, 208), k=-1))


def area_fields(source, x0, y0, across, down, tw, th, step_x, step_y, rng, span_x=None, span_y=None):
    """Camera fields of one AOI whose grid starts at (x0, y0) of the source: field (c, r) near
    (c * step_x, r * step_y), moved by a seeded offset of up to 2 px on top of camera_fields'
    own jitter and tint, so that overlaps differ joint by joint; the last column and the bottom
    row are then shifted so that the rows together span span_x (sum over rows of last minus
    first field's x; default: whole steps) and the columns span_y, i.e. the overlaps of each
    axis sum to a chosen total. Returns ({(c, r): tile}, {(c, r): corner relative to (x0, y0)})."""
    span_x = down * (across - 1) * step_x if span_x is None else span_x
    span_y = across * (down - 1) * step_y if span_y is None else span_y
    off = {(c, r): [int(v) for v in rng.integers(-2, 3, 2)] for r in range(down) for c in range(across)}
    tiles, corners = {}, {}

    def shoot(c, r):
        dx, dy = off[(c, r)]
        cx, cy = x0 + dx, y0 + dy
        crop = source[cy:cy + r * step_y + th + 4, cx:cx + c * step_x + tw + 4]
        t, k = camera_fields(crop, tw, th, {"step": (step_x, step_y),
                                            "missing": lambda cc, rr: (cc, rr) != (c, r)})
        tiles[(c, r)] = t[(c, r)]
        corners[(c, r)] = (k[(c, r)][0] + dx, k[(c, r)][1] + dy)

    for key in off:
        shoot(*key)
    # the overlaps' deviations telescope along a row / a column
    sx = span_x - sum(corners[(across - 1, r)][0] - corners[(0, r)][0] for r in range(down))
    sy = span_y - sum(corners[(c, down - 1)][1] - corners[(c, 0)][1] for c in range(across))
    if across > 1:
        for r in range(down):
            off[(across - 1, r)][0] += sx // down + (r < sx % down)
    if down > 1:
        for c in range(across):
            off[(c, down - 1)][1] += sy // across + (c < sy % across)
    for r in range(down):
        shoot(across - 1, r)
    for c in range(across):
        shoot(c, down - 1)
    assert sum(corners[(across - 1, r)][0] - corners[(0, r)][0] for r in range(down)) == span_x or across == 1
    assert sum(corners[(c, down - 1)][1] - corners[(c, 0)][1] for c in range(across)) == span_y or down == 1
    return tiles, corners


def level_entry(rgb, mask):
    return dict(rgb=rgb, mask=mask, lossless=False)


def make_stitched(folder, source):
    name, tw, th, adv_x, adv_y = "bif-stitched", 256, 320, 232, 296
    across, down = 6, 4
    rng = np.random.default_rng(20261125)
    fields, corners = area_fields(source, 700, 500, across, down, tw, th, adv_x, adv_y, rng)
    joints = area_joints(corners, across, down, tw, th)
    # joints[5] (UP) a failed match: weightless, overlaps written as 0; joints[8] (RIGHT) a poor
    # match: unjoined, confidence 40, OverlapX 4 too large (it still weighs); joints[13] (UP)
    # unjoined but good
    assert (joints[5]["Direction"], joints[8]["Direction"], joints[13]["Direction"]) == ("UP", "RIGHT", "UP")
    joints[5].update(Confidence=0, FlagJoined=0, OverlapX=0, OverlapY=0)
    joints[8].update(Confidence=40, FlagJoined=0, OverlapX=joints[8]["OverlapX"] + 4)
    joints[13]["FlagJoined"] = 0
    balance_confidences(joints, tw - adv_x, th - adv_y, rng)
    enc = encode_info_xml([dict(
        attrs=[("AOIScanned", 1), ("AOIIndex", 0), ("Width", tw), ("Height", th), ("NumRows", down),
               ("NumCols", across), ("Pos-X", 0), ("Pos-Y", 0), ("MaxJTPFileSize", 131072)],
        joints=joints, origin=[("OriginX", 0), ("OriginY", 0)])])
    iscan = iscan_xml([("Magnification", "20"), ("Mode", "1"), ("ScanMode", "1"), ("ScanRes", "0.499"),
                       ("ScanWhitePoint", "242"), ("ShowLabel", "1"), ("SlideAnnotation", ""),
                       ("UnitNumber", "BI10N0261"), ("UserName", "histo"), ("Z-layers", "1"),
                       ("Z-spacing", "1")],
                      [[("Left", "1.20"), ("Top", "21.04"), ("Right", "21.74"), ("Bottom", "38.32")]], nul=True)
    full = source[500:500 + 1208, 700:700 + 1416]
    path = os.path.join(folder, name + ".bif")
    mags = ["20", "10", "5", "2.5"]
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        write_single_tile_jpeg(tif, macro_image(full, ["VENTANA", "bif-stitched", "H&E  S-26-1125"], "S261125-A"),
                               "Label_Image", xmp_tag(iscan))
        write_single_tile_jpeg(tif, downsample(full, 8), "Thumbnail")
        for k, mag in enumerate(mags):
            ds = 2 ** k
            stored = fields if ds == 1 else pyramid_tiles(fields, ds, tw, th)
            sa, sd = -(-across // ds), -(-down // ds)
            write_jpeg_level(tif, stored, sa, sd, tw, th, across * tw // ds, down * th // ds,
                             f"level={k} mag={mag} quality={QUALITY}", xmp_tag(enc) if k == 0 else ())
    levels, assoc = decode_bif(path)
    W, H = levels[0][0].shape[1], levels[0][0].shape[0]
    assert (W, H) == (1416, 1208), (W, H)
    regions = [
        ("l0-top-left", 0, 0, 0, 300, 340),
        ("l0-joint-x", 0, 640, 200, 160, 140),       # columns 2 | 3 (overlap x 696..720)
        ("l0-joint-xy", 0, 420, 560, 128, 96),       # corner of fields (1..2, 1..2)
        ("l0-joint-y-row3", 0, 1000, 860, 200, 120),  # rows 2 | 3
        ("l0-right-bottom-edge", 0, 1336, 1140, 120, 100),
        ("l1-seams", 1, 400, 296, 360, 300),
        ("l1-edge", 1, 1200, 1000, 120, 110),
        ("l2-whole", 2, 0, 0, 354, 302),
        ("l3-past-edge", 3, 0, 0, 200, 160),
    ]
    notes = ("BIF, one AOI of 6x4 overlapping 256x320 fields (per-joint overlaps 21..27, "
             "confidence-weighted means 24/24 -> advance 232x296), 4 levels, macro + thumbnail")
    return dict(name=name, format="bif", path=name + ".bif", notes=notes, reference="openslide",
                levels=[level_entry(*lv) for lv in levels], regions=regions, associated=assoc)


def make_subpixel(folder, source):
    """Overlaps whose weighted means are not whole: fields land at fractional positions."""
    name, tw, th, across, down = "bif-subpixel", 256, 224, 6, 6
    mean_x, mean_y = Fraction(128, 5), Fraction(96, 5)   # 25.6, 19.2: advance 230.4 x 204.8
    rng = np.random.default_rng(20261127)
    x0, y0 = 700, 1300
    span_x = down * (across - 1) * (tw - mean_x)      # 6912: the overlaps average exactly 25.6
    span_y = across * (down - 1) * (th - mean_y)      # 6144
    fields, corners = area_fields(source, x0, y0, across, down, tw, th, 230, 205, rng,
                                  int(span_x), int(span_y))
    joints = area_joints(corners, across, down, tw, th)
    joints[3]["FlagJoined"] = 0
    joints[20]["FlagJoined"] = 0
    balance_confidences(joints, mean_x, mean_y, rng)
    enc = encode_info_xml([dict(
        attrs=[("AOIScanned", 1), ("AOIIndex", 0), ("Width", tw), ("Height", th), ("NumRows", down),
               ("NumCols", across), ("Pos-X", 0), ("Pos-Y", 0), ("MaxJTPFileSize", 131072)],
        joints=joints, origin=[("OriginX", 0), ("OriginY", 0)])])
    iscan = iscan_xml([("Magnification", "40"), ("Mode", "1"), ("ScanMode", "1"), ("ScanRes", "0.2325"),
                       ("ScanWhitePoint", "238"), ("ShowLabel", "1"), ("UnitNumber", "BI10N0261"),
                       ("Z-layers", "1"), ("Z-spacing", "1")],
                      [[("Left", "4.10"), ("Top", "20.00"), ("Right", "10.80"), ("Bottom", "26.00")]])
    full = source[y0:y0 + 1248, x0:x0 + 1408]
    path = os.path.join(folder, name + ".bif")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        write_single_tile_jpeg(tif, macro_image(full, ["VENTANA", "bif-subpixel", "H&E  S-26-1127"], "S261127-D"),
                               "Label_Image", xmp_tag(iscan))
        write_single_tile_jpeg(tif, downsample(full, 8), "Thumbnail")
        for k, mag in enumerate(["40", "20", "10", "5"]):
            ds = 2 ** k
            stored = fields if ds == 1 else pyramid_tiles(fields, ds, tw, th)
            write_jpeg_level(tif, stored, -(-across // ds), -(-down // ds), tw, th, across * tw // ds,
                             down * th // ds, f"level={k} mag={mag} quality={QUALITY}",
                             xmp_tag(enc) if k == 0 else ())
    levels, assoc = decode_bif(path)
    assert levels[0][0].shape[:2] == (1248, 1408), levels[0][0].shape
    regions = [
        ("l0-top-left", 0, 0, 0, 280, 250),             # field (0, 0) and its seams at x 230.4, y 204.8
        ("l0-joint-x", 0, 660, 300, 100, 90),           # columns 2 | 3 (overlap x 691.2 .. 716.8)
        ("l0-joint-xy", 0, 900, 580, 120, 110),         # corner of fields (3..4, 2..3)
        ("l0-right-bottom-edge", 0, 1300, 1150, 160, 140),
        ("l1-seams", 1, 400, 360, 300, 260),
        ("l2-whole", 2, 0, 0, 360, 320),                # the whole level and past its edges
        ("l3-whole", 3, 0, 0, 176, 156),
    ]
    notes = ("BIF, one AOI of 6x6 256x224 fields, weighted mean overlaps 25.6/19.2 -> advance "
             "230.4x204.8: fields at fractional positions (cairo bilinear, SATURATE), 4 levels")
    return dict(name=name, format="bif", path=name + ".bif", notes=notes, reference="openslide",
                levels=[level_entry(*lv) for lv in levels], regions=regions, associated=assoc)


def make_two_aoi(folder, source):
    name, tw, th, adv_x, adv_y = "bif-two-aoi", 240, 224, 220, 204
    rng = np.random.default_rng(20261126)
    ox, oy = 500, 1300  # where the slide's (0, 0) lies in the source
    a0 = dict(x=16, y=0, across=3, down=2, start_col=0, start_row=0)
    a2 = dict(x=904, y=440, across=2, down=3, start_col=4, start_row=2)
    heights = [(a["down"] - 1) * adv_y + th for a in (a0, a2)]
    pos_y0 = 700
    top = pos_y0 + heights[0]               # AOI 0 is the topmost: y 0
    pos_y2 = top - a2["y"] - heights[1]      # 56
    stored, infos, all_joints = {}, [], []
    for a in (a0, a2):
        fields, corners = area_fields(source, ox + a["x"], oy + a["y"], a["across"], a["down"],
                                      tw, th, adv_x, adv_y, rng)
        for (c, r), t in fields.items():
            stored[(a["start_col"] + c, a["start_row"] + r)] = t
        a["joints"] = area_joints(corners, a["across"], a["down"], tw, th)
        all_joints += a["joints"]
    balance_confidences(all_joints, tw - adv_x, th - adv_y, rng)
    infos.append(dict(attrs=[("AOIScanned", 1), ("AOIIndex", 0), ("Width", tw), ("Height", th),
                             ("NumRows", a0["down"]), ("NumCols", a0["across"]), ("Pos-X", "16.000000"),
                             ("Pos-Y", f"{pos_y0}.000000"), ("MaxJTPFileSize", 65536)],
                      joints=a0["joints"], origin=[("OriginX", 0), ("OriginY", 0)]))
    infos.append(dict(attrs=[("AOIScanned", 0), ("AOIIndex", 1), ("Width", 0), ("Height", 0),
                             ("NumRows", 0), ("NumCols", 0), ("Pos-X", ""), ("Pos-Y", "")],
                      joints=[], origin=[("OriginX", 7), ("OriginY", 7)]))
    infos.append(dict(attrs=[("AOIScanned", 1), ("AOIIndex", 2), ("Width", tw), ("Height", th),
                             ("NumRows", a2["down"]), ("NumCols", a2["across"]), ("Pos-X", "904"),
                             ("Pos-Y", str(pos_y2)), ("MaxJTPFileSize", 65536)],
                      joints=a2["joints"], origin=[("OriginX", 4 * tw), ("OriginY", 2 * th)]))
    enc = encode_info_xml(infos)
    iscan = iscan_xml([("Magnification", "20"), ("Mode", "1"), ("ScanMode", "2"), ("ScanRes", "0.499"),
                       ("ScannerModel", "VENTANA iScan HT"), ("ShowLabel", "0"), ("UnitNumber", "BI12N0007"),
                       ("Z-layers", "1"), ("Z-spacing", "1")],
                      [[("Left", "3.0"), ("Top", "20.0"), ("Right", "12.5"), ("Bottom", "27.0")],
                       [("Left", "14.0"), ("Top", "30.0"), ("Right", "16.0"), ("Bottom", "31.0")],
                       [("Left", "15.0"), ("Top", "24.0"), ("Right", "22.5"), ("Bottom", "33.0")]],
                      root_metadata=True)
    full = source[oy:oy + 1072, ox:ox + 1364]
    sa, sd = 6, 5
    path = os.path.join(folder, name + ".bif")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        write_raw(tif, macro_image(full, ["VENTANA", "bif-two-aoi", "2 AOIs"], "S261125-B"), "Label Image",
                  extratags=xmp_tag(iscan))
        prob = (255 - downsample(full, 8).min(axis=2)).astype(np.uint8)
        write_raw(tif, prob, "Probability_Image", compression="lzw")
        for k, mag in enumerate(["20", "10", "5"]):
            ds = 2 ** k
            tiles = stored if ds == 1 else pyramid_tiles(stored, ds, tw, th)
            write_jpeg_level(tif, tiles, -(-sa // ds), -(-sd // ds), tw, th, sa * tw // ds, sd * th // ds,
                             f"level={k} mag={mag} quality={QUALITY}", xmp_tag(enc) if k == 0 else ())
    levels, assoc = decode_bif(path)
    assert levels[0][0].shape[:2] == (1072, 1364), levels[0][0].shape
    regions = [
        ("l0-aoi0-seams", 0, 180, 120, 200, 200),      # AOI 0 columns 0|1, rows 0|1
        ("l0-left-margin", 0, 0, 300, 64, 200),        # x < 16 empty, AOI 0 bottom edge at y 428
        ("l0-gap", 0, 640, 300, 400, 260),             # AOI 0 right edge, the gap, AOI 2 top-left
        ("l0-aoi2-joints", 0, 1060, 600, 200, 240),    # AOI 2 columns 0|1, rows 0|1
        ("l0-aoi2-bottom-edge", 0, 1200, 1000, 200, 100),
        ("l1-aoi0-right-gap", 1, 400, 100, 400, 360),  # AOI 0's last column, the gap, AOI 2's top
        ("l2-whole", 2, 0, 0, 360, 280),               # the whole level and past its edges
    ]
    notes = ("BIF, AOIs 0 and 2 scanned (1 skipped), 240x224 fields, advance 220x204; AOI 2 "
             "painted off its region[1].x; 3 levels; macro only (Probability_Image ignored)")
    return dict(name=name, format="bif", path=name + ".bif", notes=notes, reference="openslide",
                levels=[level_entry(*lv) for lv in levels], regions=regions, associated=assoc)


def make_plain(folder, source):
    name, t = "ventana-plain", 256
    full = np.ascontiguousarray(source[1500:2700, 400:1900])
    iscan = iscan_xml([("Magnification", "40"), ("Mode", "1"), ("ScanMode", "1"), ("ScanRes", "0.2495"),
                       ("ShowLabel", "1"), ("UnitNumber", "BI11N0042"), ("Z-layers", "1"), ("Z-spacing", "1")],
                      [[("Left", "2.0"), ("Top", "22.0"), ("Right", "18.0"), ("Bottom", "35.0")]])
    path = os.path.join(folder, name + ".tif")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        write_single_tile_jpeg(tif, macro_image(full, ["VENTANA", "ventana-plain", "no overlaps"], "S261125-C"),
                               "Label_Image", xmp_tag(iscan))
        write_single_tile_jpeg(tif, downsample(full, 8), "Thumbnail")
        for k, mag in enumerate(["40", "20", "10", "5"]):
            img = downsample(full, 2 ** k)
            H, W = img.shape[:2]
            pad = np.pad(img, ((0, -H % t), (0, -W % t), (0, 0)), mode="edge")
            tiles = {(c, r): pad[r * t:(r + 1) * t, c * t:(c + 1) * t]
                     for r in range(pad.shape[0] // t) for c in range(pad.shape[1] // t)}
            write_jpeg_level(tif, tiles, pad.shape[1] // t, pad.shape[0] // t, t, t, W, H,
                             f"level={k} mag={mag} quality={QUALITY}")
    levels, assoc = decode_bif(path)
    regions = [
        ("l0-tile-corner", 0, 200, 180, 128, 160),     # stored tiles (0..1, 0..1)
        ("l0-right-bottom-edge", 0, 1400, 1100, 160, 140),
        ("l1-edge", 1, 1300, 1000, 120, 120),
        ("l2-whole", 2, 0, 0, 375, 300),
        ("l3-past-edge", 3, 0, 0, 200, 160),
    ]
    notes = "Ventana TIFF: no EncodeInfo, plain 256x256 JPEG tile grids, 4 levels, macro + thumbnail"
    return dict(name=name, format="bif", path=name + ".tif", notes=notes, reference="openslide",
                levels=[level_entry(*lv) for lv in levels], regions=regions, associated=assoc)


def make_dp200(folder, source):
    name, tw, th = "bif-dp200", 256, 256
    fields, corners = area_fields(source, 100, 100, 2, 2, tw, th, 232, 256, np.random.default_rng(7))
    joints = area_joints(corners, 2, 2, tw, th, scan_left=True)
    for j in joints:
        j["Confidence"] = 100
    enc = encode_info_xml([dict(
        attrs=[("AOIScanned", 1), ("AOIIndex", 0), ("Width", tw), ("Height", th), ("NumRows", 2),
               ("NumCols", 2), ("Pos-X", 0), ("Pos-Y", 0)],
        joints=joints, origin=[("OriginX", 0), ("OriginY", 0)])])
    iscan = iscan_xml([("Magnification", "40"), ("ScanRes", "0.25"), ("ScannerModel", "VENTANA DP 200"),
                       ("Z-layers", "1")], [])
    path = os.path.join(folder, name + ".bif")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        write_raw(tif, np.full((64, 32, 3), 230, np.uint8), "Label_Image", extratags=xmp_tag(iscan))
        write_jpeg_level(tif, fields, 2, 2, tw, th, 2 * tw, 2 * th, "level=0 mag=40 quality=95", xmp_tag(enc))
    return dict(name=name, format="bif", path=name + ".bif", reference="openslide",
                notes="DP 200-style BIF with Direction=\"LEFT\" joints",
                refuse='joints with Direction="LEFT" (OpenSlide 4.0.1 knows RIGHT and UP only)')


def make(folder, source):
    return [make_stitched(folder, source), make_subpixel(folder, source), make_two_aoi(folder, source),
            make_plain(folder, source), make_dp200(folder, source)]
