"""Philips TIFF test slides (the XML-described TIFF that Philips IntelliSite exports), with
their decode as OpenSlide 4.0.1 reads them.

Every slide: TIFF directory 0 has Software "Philips DP v1.0" and an ImageDescription that is a
<DataObject ObjectType="DPUfsImport"> XML document; the tiled directories are the pyramid
(256 x 256 JPEG tiles, later ones NewSubfileType 1 and ImageDescription "level=K ..."); the
tiled directories' ImageWidth/ImageLength are rounded up to whole tiles, as real exports are
(level 0 excepted in philips-xml-assoc), and the XML's PIIM_PIXEL_DATA_REPRESENTATION_COLUMNS/
ROWS repeat those padded sizes. OpenSlide takes level 0's size from the TIFF and the size of
level k from level 0's size divided (integer division) by
round((col_spacing_k / col_spacing_0 + row_spacing_k / row_spacing_0) / 2) (halves away
from zero), the spacings being the k-th PixelDataRepresentation's DICOM_PIXEL_SPACING
("row" "column", in mm). Tile pixels
beyond that size (the padding, painted a conspicuous green) are transparent, and so are absent
tiles (TileByteCounts 0): OpenSlide paints nothing there. Pixels are a crop of the source.

philips-sparse (BigTIFF; ~0.6 MB)
    Level 0 1536 x 1280 (6 x 5 tiles); levels 1-4 true 768 x 640, 384 x 320, 192 x 160,
    96 x 80 in TIFF directories of 768 x 768, 512 x 512, 256 x 256, 256 x 256 (padded with
    green). JPEG tiles YCbCr 4:2:0 (Photometric 6) as abbreviated streams sharing one
    JPEGTables tag. Absent tiles: level 0 (0,0), (1,0), (0,1) and (4,3); level 1 (0,0).
    Level spacings ("row" "column" mm) are not exact powers of two and differ per axis:
    level 3 is 8.3x in rows and 7.6x in columns (mean 7.95, rounds to 8).
    WSI DICOM_PIXEL_SPACING "0.000250119" "0.000240211": mpp-x 0.240211, mpp-y 0.250119
    (different from level 0's PixelDataRepresentation spacing, as in real files).
    DICOM_DERIVATION_DESCRIPTION has levels=10003,... (no objective power, as real files).
    PIM_DP_UFS_BARCODE base64 of "PHL-A-0042" (openslide.barcode). An empty attribute and a
    nested IDataObjectArray that is not a pixel-data sequence (both skipped / empty string).
    Label and macro both as TIFF directories (stripped JPEG, ImageDescription "Label" /
    "Macro", label 400 x 352, macro 960 x 352) and, with other pixels and sizes (208 x 176,
    480 x 176), as base64 JPEG in the XML: the TIFF directories win.
philips-xml-assoc (classic TIFF; ~1.1 MB)
    Level 0 1100 x 850 (not a tile multiple: ImageWidth/Length exact, edge tiles padded
    green); levels 1-3 true 550 x 425, 275 x 212, 137 x 106 (floor division) in TIFF
    directories 768 x 512, 512 x 256, 256 x 256. Full (self-contained) JPEG tiles with
    Photometric RGB: the JPEG data is RGB, no colour transform (Adobe marker), 4:4:4. Absent
    tiles: level 0 (2,1), (4,3) (the padded corner tile) and level 2 (1,0). Level spacings:
    level 1 1.9x / 2.1x, level 2 4.2x / 3.9x, level 3 8.4x / 7.7x (rows / columns).
    DICOM_PIXEL_SPACING "0.000221" "0.000229" (mpp-x 0.229, mpp-y 0.221); levels=20,10,5 in
    the derivation description: objective power 20. Label and macro only in the XML
    (PIM_DP_IMAGE_DATA of the LABELIMAGE / MACROIMAGE DPScannedImage; the macro object comes
    before the WSI one, its base64 broken into 76-character lines); no barcode. A
    DICOM_MANUFACTURER at top level is overridden by the WSI object's later one.
philips-spacing-count (refused)
    Two tiled levels but three PixelDataRepresentation spacings: "Couldn't get level
    downsamples".
philips-two-wsi (refused)
    Two DPScannedImage objects of type WSI: "Expected one WSI image, found 2".

Regions are level-0 coordinates, at level k on multiples of the level's downsample: over
absent tiles, across the true right/bottom edges into the padding, wholly past the level,
and at negative coordinates. Associated images are given as OpenSlide gives them (RGB of the
JPEG as libjpeg decodes it).
"""

import base64
import math
import os
import re
import struct
import sys
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import imagecodecs
import numpy as np
import tifffile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slide_refs import downsample, label_image, overview_image, tiles_of  # noqa: E402

TILE = 256
PAD = (0, 200, 0)  # the padding colour: a reader that does not clip shows green
QUALITY = 80
SOFTWARE = "Philips DP v1.0"


# ---------------------------------------------------------------- XML

def attr(name, value, pmsvr="IString", group="0x301D", element="0x1000"):
    """One <Attribute> with a text value (quotes escaped as real exports do)."""
    if value is None:
        return f'<Attribute Name="{name}" Group="{group}" Element="{element}" PMSVR="{pmsvr}"/>'
    text = escape(str(value), {'"': "&quot;"})
    return f'<Attribute Name="{name}" Group="{group}" Element="{element}" PMSVR="{pmsvr}">{text}</Attribute>'


def array_attr(name, objects, group="0x301D", element="0x1003"):
    inner = "".join(f'<DataObject ObjectType="{t}">{"".join(a)}</DataObject>' for t, a in objects)
    return (f'<Attribute Name="{name}" Group="{group}" Element="{element}" PMSVR="IDataObjectArray">'
            f"<Array>{inner}</Array></Attribute>")


def spacing(row_mm, col_mm):
    return f'"{row_mm}" "{col_mm}"'


def pixel_representation(i, sp, tiff_w, tiff_h):
    return ("PixelDataRepresentation", [
        attr("DICOM_PIXEL_SPACING", sp, "IDoubleArray", "0x0028", "0x0030"),
        attr("PIIM_DP_PIXEL_DATA_REPRESENTATION_POSITION", '"0" "0" "0"', "IDoubleArray", "0x101D", "0x100B"),
        attr("PIIM_PIXEL_DATA_REPRESENTATION_COLUMNS", tiff_w, "IUInt32", "0x2001", "0x115E"),
        attr("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", i, "IUInt16", "0x1001", "0x8B02"),
        attr("PIIM_PIXEL_DATA_REPRESENTATION_ROWS", tiff_h, "IUInt32", "0x2001", "0x115D"),
    ])


def wsi_object(derivation, wsi_spacing, reps, cols, rows, extra=()):
    return ("DPScannedImage", [
        attr("PIM_DP_IMAGE_TYPE", "WSI", element="0x1004"),
        attr("UFS_IMAGE_PIXEL_TRANSFORMATION_METHOD", "0", element="0x2013"),
        attr("DICOM_BITS_ALLOCATED", 8, "IUInt16", "0x0028", "0x0100"),
        attr("DICOM_DERIVATION_DESCRIPTION", derivation, group="0x0008", element="0x2111"),
        attr("DICOM_LOSSY_IMAGE_COMPRESSION", "01", group="0x0028", element="0x2110"),
        attr("DICOM_LOSSY_IMAGE_COMPRESSION_METHOD", '"PHILIPS_TIFF_1_0"', "IStringArray", "0x0028", "0x2114"),
        attr("DICOM_PHOTOMETRIC_INTERPRETATION", "RGB", group="0x0028", element="0x0004"),
        attr("DICOM_PIXEL_SPACING", wsi_spacing, "IDoubleArray", "0x0028", "0x0030"),
        *extra,
        array_attr("PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE", reps, "0x1001", "0x8B01"),
        attr("PIM_DP_IMAGE_COLUMNS", cols, "IUInt32", element="0x1007"),
        attr("PIM_DP_IMAGE_ROWS", rows, "IUInt32", element="0x1006"),
        attr("PIM_DP_SOURCE_FILE", "%FILENAME%"),
    ])


def image_object(kind, jpeg, sp, w, h, wrap=False):
    data = base64.b64encode(jpeg).decode()
    if wrap:
        data = "\n".join(data[i:i + 76] for i in range(0, len(data), 76))
    return ("DPScannedImage", [
        attr("PIM_DP_IMAGE_TYPE", kind, element="0x1004"),
        attr("PIM_DP_IMAGE_DATA", data, element="0x1005"),
        attr("DICOM_PIXEL_SPACING", sp, "IDoubleArray", "0x0028", "0x0030"),
        attr("PIM_DP_IMAGE_COLUMNS", w, "IUInt32", element="0x1007"),
        attr("PIM_DP_IMAGE_ROWS", h, "IUInt32", element="0x1006"),
    ])


def document(top_before, images, top_after):
    body = "".join(top_before) + array_attr("PIM_DP_SCANNED_IMAGES", images) + "".join(top_after)
    return f'<?xml version="1.0" encoding="UTF-8" ?>\n<DataObject ObjectType="DPUfsImport">{body}</DataObject>\n'


# ---------------------------------------------------------------- JPEG and TIFF writing

def jpeg(img, rgb=False):
    """Baseline JPEG: YCbCr 4:2:0 with JFIF, or (rgb) untransformed RGB 4:4:4 (Adobe marker)."""
    if rgb:
        return imagecodecs.jpeg8_encode(img, level=QUALITY, colorspace="RGB", outcolorspace="RGB")
    return imagecodecs.jpeg8_encode(img, level=QUALITY)


def segments(stream):
    """(marker, whole segment bytes) up to and including SOS; then the rest."""
    out, j = [], 2
    while True:
        m = stream[j + 1]
        n = int.from_bytes(stream[j + 2:j + 4], "big")
        out.append((m, stream[j:j + 2 + n]))
        j += 2 + n
        if m == 0xDA:
            return out, stream[j:]


def abbreviate(stream):
    """Split a full JPEG into (tables-only stream, abbreviated stream without DQT/DHT/APPn)."""
    segs, rest = segments(stream)
    tables = b"\xff\xd8" + b"".join(s for m, s in segs if m in (0xDB, 0xC4)) + b"\xff\xd9"
    body = b"\xff\xd8" + b"".join(s for m, s in segs if m not in (0xDB, 0xC4) and not 0xE0 <= m <= 0xEF) + rest
    return tables, body


def write_level(tw, content, tiff_w, tiff_h, missing, *, rgb, tables, first, desc, bigtiff=None):
    """One tiled directory of tiff_w x tiff_h: content (true size) in padded tiles, the tiles in
    `missing` left out (offset and byte count 0)."""
    tiles, across, down = tiles_of(content, TILE, TILE, PAD)
    assert across * TILE >= tiff_w and down * TILE >= tiff_h
    across, down = -(-tiff_w // TILE), -(-tiff_h // TILE)
    streams, shared = [], None
    for r in range(down):
        for c in range(across):
            if (c, r) in missing:
                streams.append(b"")
                continue
            tile = tiles.get((c, r))
            if tile is None:
                tile = np.empty((TILE, TILE, 3), np.uint8)
                tile[:] = PAD
            s = jpeg(tile, rgb)
            if tables:
                t, s = abbreviate(s)
                assert shared in (None, t), "tiles do not share their tables"
                shared = t
            streams.append(s)
    tw.write(iter(streams), shape=(tiff_h, tiff_w, 3), dtype=np.uint8, tile=(TILE, TILE),
             compression="jpeg", photometric="rgb", subsampling=(1, 1) if rgb else (2, 2),
             jpegtables=shared, metadata=None, software=SOFTWARE, description=desc,
             subfiletype=0 if first else 1)


def mark_tiles_rgb(path):
    """Sets Photometric to RGB (2) on every tiled directory: tifffile labels JPEG YCbCr (6)
    whatever the data, and Philips' useRgb=1 exports store untransformed RGB tiles as RGB."""
    with tifffile.TiffFile(path) as tif:
        spots = [p.tags[262].valueoffset for p in tif.pages if p.is_tiled]
        order = tif.byteorder
    with open(path, "r+b") as f:
        for at in spots:
            f.seek(at)
            f.write(struct.pack(order + "H", 2))


def write_strip_image(tw, img, desc):
    """A stripped (one strip) JPEG directory: the label or macro of real exports."""
    h, w = img.shape[:2]
    tw.write(iter([jpeg(img)]), shape=(h, w, 3), dtype=np.uint8, rowsperstrip=h, compression="jpeg",
             photometric="rgb", subsampling=(2, 2), metadata=None, software=SOFTWARE,
             description=desc, subfiletype=1)


# ---------------------------------------------------------------- our own decode

def scanned_images(root, kind):
    """The DPScannedImage objects of a PIM_DP_IMAGE_TYPE, in document order."""
    out = []
    for a in root.findall("Attribute[@Name='PIM_DP_SCANNED_IMAGES']"):
        for obj in a.findall("Array/DataObject"):
            attrs = obj.findall("Attribute")
            if any(x.get("Name") == "PIM_DP_IMAGE_TYPE" for x in attrs) and any(x.text == kind for x in attrs):
                out.append(obj)
    return out


def parse_spacings(root):
    """The WSI object's PixelDataRepresentation spacings in document order: (row, col) mm."""
    wsi = scanned_images(root, "WSI")[0]
    found = wsi.findall("Attribute[@Name='PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE']/Array"
                        "/DataObject[@ObjectType='PixelDataRepresentation']/Attribute[@Name='DICOM_PIXEL_SPACING']")
    out = []
    for e in found:
        parts = e.text.split(" ")
        assert len(parts) == 2
        out.append(tuple(float(v.replace('"', " ").strip()) for v in parts))
    return out


def decode_jpeg(data, tables, photometric):
    cs = "YCBCR" if photometric == 6 else "RGB"
    return imagecodecs.jpeg8_decode(data, tables=tables, colorspace=cs, outcolorspace="RGB")


def decode(path):
    """Read the written file back: levels (tiles placed, absent ones masked, clipped to the size
    OpenSlide gives each level) and associated images (TIFF directories first, then the XML)."""
    levels, assoc = [], {}
    with tifffile.TiffFile(path) as tif:
        root = ElementTree.fromstring(tif.pages[0].description)
        fh = tif.filehandle
        pages = list(tif.pages)
        tiled = [p for p in pages if p.is_tiled]
        sp = parse_spacings(root)
        assert len(sp) == len(tiled)
        w0, h0 = tiled[0].imagewidth, tiled[0].imagelength
        for k, p in enumerate(tiled):
            # C round(): halves away from zero (Python's round() would take 2.5 to 2)
            ds = 1 if k == 0 else math.floor((sp[k][1] / sp[0][1] + sp[k][0] / sp[0][0]) / 2 + 0.5)
            w, h = (w0, h0) if k == 0 else (w0 // ds, h0 // ds)
            tw, th = p.tilewidth, p.tilelength
            across, down = -(-p.imagewidth // tw), -(-p.imagelength // th)
            canvas = np.zeros((down * th, across * tw, 3), np.uint8)
            mask = np.zeros(canvas.shape[:2], bool)
            tables = p.jpegtables
            for i, (off, n) in enumerate(zip(p.dataoffsets, p.databytecounts)):
                if n == 0:
                    continue
                r, c = divmod(i, across)
                fh.seek(off)
                canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = decode_jpeg(fh.read(n), tables, p.photometric)
                mask[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = True
            levels.append(dict(rgb=np.ascontiguousarray(canvas[:h, :w]), mask=np.ascontiguousarray(mask[:h, :w]),
                               lossless=False))
        for p in pages:
            if p.is_tiled:
                continue
            for prefix, name in (("Label", "label"), ("Macro", "macro")):
                if p.description.startswith(prefix):
                    fh.seek(p.dataoffsets[0])
                    assoc[name] = (decode_jpeg(fh.read(p.databytecounts[0]), p.jpegtables, p.photometric), False)
    for kind, name in (("LABELIMAGE", "label"), ("MACROIMAGE", "macro")):
        objs = scanned_images(root, kind)
        if name in assoc or not objs:
            continue
        data = objs[0].find("Attribute[@Name='PIM_DP_IMAGE_DATA']")
        if data is not None and data.text:
            # lenient, as glib's decoder: characters outside the alphabet are skipped
            raw = base64.b64decode(re.sub(r"[^A-Za-z0-9+/=]", "", data.text))
            assoc[name] = (imagecodecs.jpeg8_decode(raw), False)
    return levels, assoc


# ---------------------------------------------------------------- the slides

def pyramid(base, n):
    return [downsample(base, 2 ** k) for k in range(n)]


def slide_sparse(folder, source):
    base = np.ascontiguousarray(source[300:300 + 1280, 500:500 + 1536])
    imgs = pyramid(base, 5)
    tiff_sizes = [(1536, 1280), (768, 768), (512, 512), (256, 256), (256, 256)]
    missing = {0: {(0, 0), (1, 0), (0, 1), (4, 3)}, 1: {(0, 0)}}
    # level k spacing ("row" "column", mm): factors (rows, cols) from level 0
    s0 = (0.000250000, 0.000240000)
    factors = [(1, 1), (2.02, 1.99), (4.1, 3.95), (8.3, 7.6), (16.2, 15.9)]
    reps = [pixel_representation(k, spacing(f"{s0[0] * fr:.9g}", f"{s0[1] * fc:.9g}"), *tiff_sizes[k])
            for k, (fr, fc) in enumerate(factors)]
    label = label_image(["PHILIPS SPARSE", "PHL-A-0042", "tiff directory"], "PHL-A-0042", 400, 352)
    macro = overview_image(base, label, 960, 352)
    xlabel = label_image(["XML LABEL", "(loses to the", "TIFF directory)"], "xml-a", 208, 176)
    xmacro = overview_image(base[::-1], xlabel, 480, 176)
    xml = document(
        [attr("DICOM_MANUFACTURER", "PHILIPS", group="0x0008", element="0x0070"),
         attr("DICOM_ACQUISITION_DATETIME", "20240315101112.000000", group="0x0008", element="0x002A"),
         attr("DICOM_ACCESSION_NUMBER", None, group="0x0008", element="0x0050")],
        [wsi_object('tiff-useBigTIFF=1-useRgb=0-levels=10003,10002,10000,10001-processing=0-q80-'
                    'sourceFilename="A-1 - 2024-03-15 10.11.12.isyntax"',
                    spacing("0.000250119", "0.000240211"), reps, 1536, 1280),
         image_object("MACROIMAGE", jpeg(xmacro), spacing("0.0315", "0.0315"), 480, 176),
         image_object("LABELIMAGE", jpeg(xlabel), spacing("0.0315", "0.0315"), 208, 176)],
        [attr("PIM_DP_UFS_BARCODE", base64.b64encode(b"PHL-A-0042").decode(), element="0x1002"),
         attr("PIM_DP_UFS_INTERFACE_VERSION", "5.0", element="0x1001"),
         array_attr("UFS_IMAGE_GENERAL_HEADERS",
                    [("DPUfsImageGeneralHeader", [attr("UFS_IMAGE_DIMENSIONS", "3", "IUInt16", element="0x2003")])],
                    element="0x2000"),
         attr("DICOM_SOFTWARE_VERSIONS", '"4.0.3" "1.8.6824"', "IStringArray", "0x0018", "0x1020")])
    path = "philips-sparse.tiff"
    with tifffile.TiffWriter(os.path.join(folder, path), bigtiff=True) as tw:
        for k, img in enumerate(imgs):
            write_level(tw, img, *tiff_sizes[k], missing.get(k, set()), rgb=False, tables=True, first=k == 0,
                        desc=xml if k == 0 else f"level={k} mag={40 / 2 ** k:g} quality={QUALITY}")
        write_strip_image(tw, macro, "Macro")
        write_strip_image(tw, label, "Label")
    levels, assoc = decode(os.path.join(folder, path))
    assert [lv["rgb"].shape[:2] for lv in levels] == [(1280, 1536), (640, 768), (320, 384), (160, 192), (80, 96)]
    assert assoc["label"][0].shape[:2] == (352, 400) and assoc["macro"][0].shape[:2] == (352, 960)
    regions = [
        ("l0-absent-corner", 0, 0, 0, 600, 560),
        ("l0-absent-isolated", 0, 960, 704, 384, 384),
        ("l0-right-bottom-edge", 0, 1400, 1150, 300, 300),
        ("l0-negative", 0, -40, 600, 200, 120),
        ("l1-absent-tile", 1, 0, 0, 512, 512),
        ("l1-bottom-padding", 1, 1200, 1000, 300, 300),
        ("l2-whole-tiff", 2, 0, 0, 512, 512),
        ("l3-whole-tiff", 3, 0, 0, 256, 256),
        ("l4-whole-tiff", 4, 0, 0, 256, 256),
        ("l1-past-the-end", 1, 1600, 0, 64, 64),
    ]
    return dict(name="philips-sparse", format="philips", path=path, reference="openslide",
                notes="BigTIFF; 5 levels, levels 1-4 padded to whole 256-tiles in the TIFF (true sizes "
                      "from the XML spacings); absent tiles at levels 0 and 1; YCbCr JPEG tiles with "
                      "shared JPEGTables; mpp-x 0.240211 / mpp-y 0.250119; label and macro as TIFF "
                      "directories (win over the XML's base64 ones); barcode PHL-A-0042.",
                levels=levels, regions=regions, associated=assoc)


def slide_xml_assoc(folder, source):
    base = np.ascontiguousarray(source[1500:1500 + 850, 700:700 + 1100])
    imgs = pyramid(base, 4)
    tiff_sizes = [(1100, 850), (768, 512), (512, 256), (256, 256)]
    missing = {0: {(2, 1), (4, 3)}, 2: {(1, 0)}}
    s0 = (0.000221, 0.000229)
    factors = [(1, 1), (1.9, 2.1), (4.2, 3.9), (8.4, 7.7)]
    reps = [pixel_representation(k, spacing(f"{s0[0] * fr:.6g}", f"{s0[1] * fc:.6g}"), *tiff_sizes[k])
            for k, (fr, fc) in enumerate(factors)]
    label = label_image(["PHILIPS XML", "label in base64"], "PHL-B", 304, 256)
    macro = overview_image(base, label, 752, 256)
    xml = document(
        [attr("DICOM_MANUFACTURER", "PHILIPS", group="0x0008", element="0x0070")],
        [image_object("MACROIMAGE", jpeg(macro), spacing("0.0315", "0.0315"), 752, 256, wrap=True),
         wsi_object('tiff-useBigTIFF=0-useRgb=1-levels=20,10,5-processing=0-q80-sourceFilename="B - x.isyntax"',
                    spacing("0.000221", "0.000229"), reps, 1100, 850,
                    extra=[attr("DICOM_MANUFACTURER", "Philips Medical Systems", group="0x0008", element="0x0070")]),
         image_object("LABELIMAGE", jpeg(label), spacing("0.0315", "0.0315"), 304, 256)],
        [attr("PIM_DP_UFS_INTERFACE_VERSION", "3.0", element="0x1001")])
    path = "philips-xml-assoc.tiff"
    with tifffile.TiffWriter(os.path.join(folder, path), bigtiff=False) as tw:
        for k, img in enumerate(imgs):
            write_level(tw, img, *tiff_sizes[k], missing.get(k, set()), rgb=True, tables=False, first=k == 0,
                        desc=xml if k == 0 else f"level={k} mag={20 / 2 ** k:g} quality={QUALITY}")
    mark_tiles_rgb(os.path.join(folder, path))
    levels, assoc = decode(os.path.join(folder, path))
    assert [lv["rgb"].shape[:2] for lv in levels] == [(850, 1100), (425, 550), (212, 275), (106, 137)]
    regions = [
        ("l0-absent-tile", 0, 448, 192, 384, 384),
        ("l0-padded-corner", 0, 900, 700, 300, 300),
        ("l1-right-bottom-edge", 1, 900, 700, 200, 200),
        ("l2-absent-and-padding", 2, 0, 0, 512, 512),
        ("l3-whole-tiff", 3, 0, 0, 256, 256),
        ("l1-negative", 1, -64, -32, 200, 200),
    ]
    return dict(name="philips-xml-assoc", format="philips", path=path, reference="openslide",
                notes="Classic TIFF; level 0 1100 x 850 (not tile-aligned), levels 1-3 padded to whole "
                      "tiles; RGB (untransformed) JPEG tiles without JPEGTables; absent tiles; "
                      "mpp-x 0.229 / mpp-y 0.221; objective power 20; label and macro only as base64 "
                      "JPEG in the XML (macro base64 wrapped in lines).",
                levels=levels, regions=regions, associated=assoc)


def slide_refused(folder, source, name, reason, wsi_count, extra_spacings):
    """A tiny two-level slide whose XML OpenSlide refuses."""
    base = np.ascontiguousarray(source[:256, :384])
    imgs = pyramid(base, 2)
    tiff_sizes = [(384, 256), (256, 256)]
    sp = [spacing("0.00025", "0.00025"), spacing("0.0005", "0.0005"), spacing("0.001", "0.001")]
    reps = [pixel_representation(k, sp[k], *tiff_sizes[min(k, 1)]) for k in range(2 + extra_spacings)]
    wsis = [wsi_object("tiff-levels=10000", spacing("0.00025", "0.00025"), reps, 384, 256) for _ in range(wsi_count)]
    xml = document([attr("DICOM_MANUFACTURER", "PHILIPS", group="0x0008", element="0x0070")], wsis, [])
    path = f"{name}.tiff"
    with tifffile.TiffWriter(os.path.join(folder, path)) as tw:
        for k, img in enumerate(imgs):
            write_level(tw, img, *tiff_sizes[k], set(), rgb=False, tables=False, first=k == 0,
                        desc=xml if k == 0 else f"level={k}")
    return dict(name=name, format="philips", path=path, reference="openslide", refuse=reason,
                notes=f"Refused by OpenSlide: {reason}.", levels=[], regions=[], associated={})


def make(folder, source):
    return [
        slide_sparse(folder, source),
        slide_xml_assoc(folder, source),
        slide_refused(folder, source, "philips-spacing-count",
                      "three PixelDataRepresentation spacings for two tiled levels (Couldn't get level downsamples)",
                      1, 1),
        slide_refused(folder, source, "philips-two-wsi",
                      "two WSI DPScannedImage objects (Expected one WSI image, found 2)", 2, 0),
    ]
