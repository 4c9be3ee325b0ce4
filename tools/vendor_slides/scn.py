"""Leica SCN test slides (reference: OpenSlide 4.0.1), as a Leica SCN400 writes them.

Every file is a little-endian BigTIFF whose first directory carries, in ImageDescription,
an XML document in the namespace http://www.leica-microsystems.com/scn/2010/10/01: one
<collection> (sizeX/sizeY: the glass area described, in nanometres; <barcode> Base64 text)
holding one <image> per scan, in this order: the macro first (its <view> at offset 0, 0 with
the collection's size, which is what makes it the macro), then the main image(s). Each image
has <creationDate>, <device model version>, <pixels> with one <dimension sizeX sizeY r ifd>
per resolution r (c and z attributes only where the image has channels or focal planes),
<view sizeX sizeY offsetX offsetY spacingZ> in nanometres, and <scanSettings> with
<objective>, <numericalAperture> and <illuminationSource>. Directories are stored in the
order the XML names them (macro r0, r1, then main r0, r1, r2, ...). Pixel directories are
tiled, JPEG (PIL/libjpeg-turbo, quality 80, JFIF YCbCr 4:2:0, one complete JPEG per tile,
no JPEGTables), PhotometricInterpretation YCbCr with YCbCrSubSampling 2,2 (OpenSlide
decodes them with its direct libjpeg path, macro through libtiff's RGBA path). Edge tiles
are padded by repeating the last row/column. XResolution/YResolution (pixels per
centimetre, ResolutionUnit 3) are written on every directory from the image's
nanometres per pixel. Resolutions step by 4, as Leica's do.

Slides (level-0 pixels of a slide are collection pixels at the finest main resolution;
OpenSlide's levels are the whole collection, transparent where no main image lies):

  scn-brightfield.scn    collection 1,024,000 x 768,000 nm. Macro 512x384 (ifd 0, tiles
      256) and 128x96 (ifd 1), objective "0.25". One brightfield main image, objective "20",
      NA 0.4, 1264x1008 / 316x252 / 79x63 (ifd 2-4, tiles 512, 256, 256: partial edge tiles
      at every level), view 632,000 x 504,000 nm at offset (150,500, 101,500) nm, i.e.
      500 nm per pixel. OpenSlide levels 2048x1536, 512x384, 128x96 (downsamples 1, 4, 16);
      the main image's top-left lies at (301, 203), (75, 50), (18, 12) in the levels
      (nm offset / the level's nm per pixel, truncated: not a scaled copy of level 0's).
      openslide.bounds-x/y/width/height 301/203/1264/1008; mpp 0.5 (XResolution 20000/cm);
      objective-power 20.
  scn-two-regions.scn    collection 1,022,976 x 767,232 nm. Macro as above. Two brightfield
      main images of equal objective ("20") and dimension count: A 1024x768 / 256x192 /
      64x48 with view 512,000 x 384,000 nm (500 nm/px) at (60,250, 80,100) nm; B 640x512 /
      160x128 / 40x32 with view 319,680 x 255,744 nm (499.5 nm/px) at (620,000, 400,300) nm.
      Each level takes the finest of its images' nm per pixel (499.5, 1998, 7992), so the
      levels are 2048x1536, 512x384, 128x96 and A, stored at 500 nm/px, is painted 1:1 at
      (120, 160), (30, 40), (7, 10); B at (1241, 801), (310, 200), (77, 50). Both areas are
      painted unscaled in document order. openslide.region[0] is A, region[1] B; bounds
      120/160/1761/1153 (their union); mpp 0.5 from A's (the first main image's) level-0
      directory, not the 499.5 nm the level uses.
  scn-zstack.scn    collection 1,024,000 x 768,000 nm, macro as above; one brightfield main
      image 768x640 / 192x160 / 48x40 at (200,000, 150,000) nm, 500 nm/px, with three focal
      planes: dimensions z="0", z="1", z="2" at every r (ifd 2-10, r-major then z). Planes 1
      and 2 are blurred and tinted copies: OpenSlide 4.0.1 keeps only dimensions whose z
      attribute is absent or the string "0", so they never show. Levels 2048x1536, 512x384,
      128x96; the image at (400, 300), (100, 75), (25, 18).
  scn-fluorescence.scn    refused. Macro (brightfield, 512x384/128x96) and a fluorescence
      overview macro (8-bit grey), and one main image with illuminationSource
      "fluorescence", three channels (c="0", "1", "2": DAPI, FITC, TRITC) of 8-bit greyscale
      JPEG tiles at two resolutions 768x640 / 192x160, <channelSettings> naming them.
      OpenSlide 4.0.1 skips every non-brightfield non-macro image and then fails with
      "Can't find main image". refuse "fluorescence" (a reader's error must contain it).

Regions are level-0 coordinates on multiples of the level's downsample; the truth is the
tiles of the written file decoded here (PIL, libjpeg-turbo) and placed where OpenSlide's
rules put them, transparent outside the main images. Associated image: macro (the
brightfield macro's largest dimension)."""

import base64
import io
import os

import numpy as np
import tifffile
from PIL import Image, ImageFilter

from slide_refs import downsample, label_image, tiles_of

NS = "http://www.leica-microsystems.com/scn/2010/10/01"
DEVICE = ('model="Leica SCN400;Leica SCN" '
          'version="1.5.1.10804 2012/05/10 13:29:07;1.5.1.10864"')
QUALITY = 80


# ---------------------------------------------------------------------------------------
# writing


def jpeg_tile(tile):
    buf = io.BytesIO()
    Image.fromarray(tile).save(buf, "JPEG", quality=QUALITY)  # grey or RGB (JFIF YCbCr 4:2:0)
    return buf.getvalue()


def write_page(tw, img, tile, nm_per_px, description=None):
    """One tiled JPEG directory: tiles padded by edge replication, encoded here."""
    grey = img.ndim == 2
    rgb = np.dstack([img] * 3) if grey else img
    tiles, across, down = tiles_of(rgb, tile, tile, "edge")
    data = [jpeg_tile(tiles[(c, r)][..., 0] if grey else tiles[(c, r)])
            for r in range(down) for c in range(across)]
    res = 1e7 / nm_per_px  # pixels per centimetre
    tw.write(iter(data), shape=img.shape, dtype=np.uint8, tile=(tile, tile),
             photometric="minisblack" if grey else "rgb", compression="jpeg",
             resolution=(res, res), resolutionunit="CENTIMETER", description=description,
             metadata=None, software=False)


def write_scn(path, xml, pages):
    """pages: (image, tile size, nm per pixel) in directory order; the XML goes on the first."""
    with tifffile.TiffWriter(path, bigtiff=True, byteorder="<") as tw:
        for i, (img, tile, nm) in enumerate(pages):
            write_page(tw, img, tile, nm, xml if i == 0 else None)


def image_xml(name, uuid, date, dims, view, objective, na, source, extra=""):
    """dims: (sizeX, sizeY, attributes such as 'r="0" ifd="2"'); view: (sx, sy, ox, oy, spacing)."""
    px = "".join(f'\n        <dimension sizeX="{w}" sizeY="{h}" {a} />' for w, h, a in dims)
    sx, sy, ox, oy, sz = view
    return f"""
    <image name="{name}" uuid="urn:uuid:{uuid}">
      <creationDate>{date}</creationDate>
      <device {DEVICE} />
      <pixels sizeX="{dims[0][0]}" sizeY="{dims[0][1]}">{px}
      </pixels>
      <view sizeX="{sx}" sizeY="{sy}" offsetX="{ox}" offsetY="{oy}" spacingZ="{sz}" />
      <scanSettings>
        <objectiveSettings>
          <objective>{objective}</objective>
        </objectiveSettings>
        <illuminationSettings>
          <numericalAperture>{na}</numericalAperture>
          <illuminationSource>{source}</illuminationSource>
        </illuminationSettings>{extra}
      </scanSettings>
    </image>"""


def collection_xml(name, uuid, size_nm, barcode, images):
    code = base64.b64encode(barcode.encode()).decode()
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<scn xmlns="{NS}">\n'
            f'  <collection name="{name}" uuid="urn:uuid:{uuid}" sizeX="{size_nm[0]}" '
            f'sizeY="{size_nm[1]}">\n    <barcode>{code}</barcode>{"".join(images)}\n'
            f'  </collection>\n</scn>\n')


def macro_of(collection, text, barcode):
    """The glass seen at 1/4: the collection with a label at its left end (512x384, 128x96)."""
    m = downsample(collection, 4).copy()
    lab = label_image(text, barcode, 180, 110)
    lab = np.asarray(Image.fromarray(lab).rotate(90, expand=True).resize((96, 150)))
    m[117:267, 0:96] = lab
    return [m, downsample(m, 4)]


def macro_xml(uuid, coll_nm, macro):
    dims = [(m.shape[1], m.shape[0], f'r="{r}" ifd="{r}"') for r, m in enumerate(macro)]
    return image_xml("", uuid, "2024-03-14T09:26:53.58Z", dims,
                     (coll_nm[0], coll_nm[1], 0, 0, 0), "0.25", "0.02", "brightfield")


# ---------------------------------------------------------------------------------------
# decoding (the truth): tiles read back from the file, decoded with PIL


def decode_page(page):
    """A tiled JPEG or deflate TIFF directory decoded tile by tile from the bytes in the file
    (tifffile only locates them): JPEG with PIL (libjpeg-turbo; JPEGTables prepended when
    present), deflate with zlib; returns H x W x 3 uint8 (grey expanded)."""
    import zlib
    fh = page.parent.filehandle
    tw, th = page.tilewidth, page.tilelength
    W, H = page.imagewidth, page.imagelength
    spp = page.samplesperpixel
    across, down = -(-W // tw), -(-H // th)
    out = np.zeros((down * th, across * tw, 3), np.uint8)
    tables = page.jpegtables
    for i, (off, n) in enumerate(zip(page.dataoffsets, page.databytecounts)):
        fh.seek(off)
        raw = fh.read(n)
        if page.compression == 7:
            if tables:
                raw = tables[:-2] + raw[2:]
            t = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
        elif page.compression in (8, 32946):
            t = np.frombuffer(zlib.decompress(raw), np.uint8).reshape(th, tw, spp)
            if page.predictor == 2:  # horizontal differencing, per sample, modulo 256
                t = np.cumsum(t, axis=1, dtype=np.uint8)
            else:
                assert page.predictor == 1
            t = np.dstack([t[..., 0]] * 3) if spp == 1 else t[..., :3]
        else:
            raise ValueError(f"compression {page.compression}")
        r, c = divmod(i, across)
        out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = t
    return out[:H, :W]


def place(level_wh, areas):
    """OpenSlide's level picture: areas (decoded image, x, y) painted in order on a
    transparent canvas of the level's size."""
    w, h = level_wh
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), bool)
    for img, x, y in areas:
        ih, iw = img.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + iw, w), min(y + ih, h)
        if x0 < x1 and y0 < y1:
            rgb[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]
            mask[y0:y1, x0:x1] = True
    return rgb, mask


def truth(path, coll_nm, mains, macro_ifd):
    """OpenSlide 4.0.1's reading of the file just written. mains: per main image
    (view offset nm (x, y), [(ifd, xml width, image nm across)] for r = 0, 1, ...)."""
    with tifffile.TiffFile(path) as tif:
        nlev = len(mains[0][1])
        levels = []
        for k in range(nlev):
            npp = min(nm_across / w for _, dims in mains for (_, w, nm_across) in [dims[k]])
            wh = (int(np.ceil(coll_nm[0] / npp)), int(np.ceil(coll_nm[1] / npp)))
            areas = [(decode_page(tif.pages[dims[k][0]]), int(off[0] / npp), int(off[1] / npp))
                     for off, dims in mains]
            rgb, mask = place(wh, areas)
            levels.append(dict(rgb=rgb, mask=mask, lossless=False))
        macro = decode_page(tif.pages[macro_ifd])
    return levels, macro


# ---------------------------------------------------------------------------------------
# the slides


def slide_brightfield(folder, source):
    name = "scn-brightfield"
    nm = 500
    coll_px = (2048, 1536)
    coll_nm = (coll_px[0] * nm, coll_px[1] * nm)
    coll = source[400:400 + coll_px[1], 100:100 + coll_px[0]]
    ox_nm, oy_nm = 150_500, 101_500
    ox, oy = ox_nm // nm, oy_nm // nm  # 301, 203
    main0 = coll[oy:oy + 1008, ox:ox + 1264]
    main = [main0, downsample(main0, 4), downsample(main0, 16)]
    macro = macro_of(coll, ["FLASHSLIDE", "SCN400 test", "brightfield"], "FS-SCN-0001")
    dims = [(m.shape[1], m.shape[0], f'r="{r}" ifd="{2 + r}"') for r, m in enumerate(main)]
    xml = collection_xml("scn-brightfield", "6b1f0a52-3c1e-4d7b-9a55-0c5e1a9b2f01", coll_nm,
                         "FS-SCN-0001", [
                             macro_xml("6b1f0a52-3c1e-4d7b-9a55-0c5e1a9b2f02", coll_nm, macro),
                             image_xml("", "6b1f0a52-3c1e-4d7b-9a55-0c5e1a9b2f03",
                                       "2024-03-14T09:41:07.215Z", dims,
                                       (1264 * nm, 1008 * nm, ox_nm, oy_nm, 400), "20", "0.4",
                                       "brightfield")])
    path = os.path.join(folder, name + ".scn")
    write_scn(path, xml, [(macro[0], 256, 2000), (macro[1], 256, 8000),
                          (main[0], 512, nm), (main[1], 256, 4 * nm), (main[2], 256, 16 * nm)])
    levels, macro_dec = truth(path, coll_nm, [((ox_nm, oy_nm),
                                               [(2 + r, m.shape[1], 1264 * nm) for r, m in enumerate(main)])], 0)
    regions = [
        ("l0-origin", 0, 0, 0, 512, 384),             # empty corner of the collection
        ("l0-main-top-left", 0, 256, 192, 512, 400),  # the image's top-left corner
        ("l0-interior", 0, 800, 600, 400, 300),       # crosses a 512 tile seam of the image
        ("l0-bottom-right", 0, 1400, 1100, 300, 200),  # the image ends at (1565, 1211)
        ("l0-past-end", 0, 1900, 1400, 300, 300),     # beyond the level's end
        ("l1-whole", 1, 0, 0, 512, 384),
        ("l1-edge", 1, 1200, 800, 400, 300),
        ("l2-whole", 2, 0, 0, 128, 96),
    ]
    return dict(name=name, format="scn", path=os.path.basename(path), reference="openslide",
                notes="one brightfield main image at an offset in the collection; macro; "
                      "3 resolutions stepping by 4; bounds 301/203/1264/1008, mpp 0.5",
                levels=levels, regions=regions, associated={"macro": (macro_dec, False)})


def slide_two_regions(folder, source):
    name = "scn-two-regions"
    npp = 499.5
    coll_px = (2048, 1536)
    coll_nm = (int(coll_px[0] * npp), int(coll_px[1] * npp))  # 1,022,976 x 767,232
    coll = source[1100:1100 + coll_px[1], 172:172 + coll_px[0]]
    a_off, b_off = (60_250, 80_100), (620_000, 400_300)
    ax, ay = int(a_off[0] / npp), int(a_off[1] / npp)   # 120, 160
    bx, by = int(b_off[0] / npp), int(b_off[1] / npp)   # 1241, 801
    a0 = coll[ay:ay + 768, ax:ax + 1024]
    b0 = coll[by:by + 512, bx:bx + 640]
    a = [a0, downsample(a0, 4), downsample(a0, 16)]
    b = [b0, downsample(b0, 4), downsample(b0, 16)]
    macro = macro_of(coll, ["FLASHSLIDE", "SCN400 test", "two regions"], "FS-SCN-0002")
    a_nm = (1024 * 500, 768 * 500)
    b_nm = (int(640 * npp), int(512 * npp))  # 319,680 x 255,744
    da = [(m.shape[1], m.shape[0], f'r="{r}" ifd="{2 + r}"') for r, m in enumerate(a)]
    db = [(m.shape[1], m.shape[0], f'r="{r}" ifd="{5 + r}"') for r, m in enumerate(b)]
    xml = collection_xml("scn-two-regions", "0d3c9e7a-51b2-4f08-8e61-7a4c2b9d3e11", coll_nm,
                         "FS-SCN-0002", [
                             macro_xml("0d3c9e7a-51b2-4f08-8e61-7a4c2b9d3e12", coll_nm, macro),
                             image_xml("", "0d3c9e7a-51b2-4f08-8e61-7a4c2b9d3e13",
                                       "2024-03-14T10:02:44.903Z", da,
                                       (a_nm[0], a_nm[1], a_off[0], a_off[1], 400), "20", "0.4",
                                       "brightfield"),
                             image_xml("", "0d3c9e7a-51b2-4f08-8e61-7a4c2b9d3e14",
                                       "2024-03-14T10:09:12.377Z", db,
                                       (b_nm[0], b_nm[1], b_off[0], b_off[1], 400), "20", "0.4",
                                       "brightfield")])
    path = os.path.join(folder, name + ".scn")
    write_scn(path, xml, [(macro[0], 256, 2000), (macro[1], 256, 8000)]
              + [(m, 512 if r == 0 else 256, 500 * 4 ** r) for r, m in enumerate(a)]
              + [(m, 256, npp * 4 ** r) for r, m in enumerate(b)])
    mains = [(a_off, [(2 + r, m.shape[1], a_nm[0]) for r, m in enumerate(a)]),
             (b_off, [(5 + r, m.shape[1], b_nm[0]) for r, m in enumerate(b)])]
    levels, macro_dec = truth(path, coll_nm, mains, 0)
    regions = [
        ("l0-a-top-left", 0, 0, 0, 400, 400),
        ("l0-a-interior", 0, 600, 400, 400, 300),
        ("l0-between", 0, 1000, 700, 400, 300),       # A's bottom-right and B's top-left
        ("l0-b-bottom-right", 0, 1700, 1200, 348, 336),  # B ends at (1881, 1313); level end
        ("l1-whole", 1, 0, 0, 512, 384),
        ("l1-b", 1, 1200, 780, 200, 160),
        ("l2-whole", 2, 0, 0, 128, 96),
    ]
    return dict(name=name, format="scn", path=os.path.basename(path), reference="openslide",
                notes="two brightfield main images (500 and 499.5 nm/px) composited unscaled; "
                      "level nm/px is the finest; regions 0 and 1; macro",
                levels=levels, regions=regions, associated={"macro": (macro_dec, False)})


def blurred(img, radius, tint):
    b = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius))).astype(np.int16)
    return np.clip(b + np.array(tint, np.int16), 0, 255).astype(np.uint8)


def slide_zstack(folder, source):
    name = "scn-zstack"
    nm = 500
    coll_px = (2048, 1536)
    coll_nm = (coll_px[0] * nm, coll_px[1] * nm)
    coll = source[1400:1400 + coll_px[1], 172:172 + coll_px[0]]
    off = (200_000, 150_000)
    ox, oy = off[0] // nm, off[1] // nm  # 400, 300
    z0 = coll[oy:oy + 640, ox:ox + 768]
    planes = [z0, blurred(z0, 3, (40, -20, 0)), blurred(z0, 6, (-30, 30, 30))]
    pyr = [[p, downsample(p, 4), downsample(p, 16)] for p in planes]
    macro = macro_of(coll, ["FLASHSLIDE", "SCN400 test", "3 focal planes"], "FS-SCN-0003")
    dims, pages = [], [(macro[0], 256, 2000), (macro[1], 256, 8000)]
    for r in range(3):
        for z in range(3):
            m = pyr[z][r]
            dims.append((m.shape[1], m.shape[0], f'r="{r}" z="{z}" ifd="{len(pages)}"'))
            pages.append((m, 512 if r == 0 else 256, nm * 4 ** r))
    xml = collection_xml("scn-zstack", "a4e2b6c8-1d3f-4a5b-8c7d-9e0f1a2b3c21", coll_nm,
                         "FS-SCN-0003", [
                             macro_xml("a4e2b6c8-1d3f-4a5b-8c7d-9e0f1a2b3c22", coll_nm, macro),
                             image_xml("", "a4e2b6c8-1d3f-4a5b-8c7d-9e0f1a2b3c23",
                                       "2024-03-14T10:30:01.004Z", dims,
                                       (768 * nm, 640 * nm, off[0], off[1], 400), "20", "0.4",
                                       "brightfield")])
    path = os.path.join(folder, name + ".scn")
    write_scn(path, xml, pages)
    levels, macro_dec = truth(path, coll_nm, [(off, [(2 + 3 * r, pyr[0][r].shape[1], 768 * nm)
                                                     for r in range(3)])], 0)
    regions = [
        ("l0-image", 0, 300, 200, 600, 500),
        ("l0-bottom-right", 0, 1000, 800, 300, 240),
        ("l1-whole", 1, 0, 0, 512, 384),
        ("l2-whole", 2, 0, 0, 128, 96),
    ]
    return dict(name=name, format="scn", path=os.path.basename(path), reference="openslide",
                notes="brightfield main image with focal planes z=0,1,2 at every resolution; "
                      "only z=0 is read",
                levels=levels, regions=regions, associated={"macro": (macro_dec, False)})


def slide_fluorescence(folder, source):
    name = "scn-fluorescence"
    nm = 500
    coll_px = (2048, 1536)
    coll_nm = (coll_px[0] * nm, coll_px[1] * nm)
    coll = source[600:600 + coll_px[1], 0:coll_px[0]]
    off = (250_000, 200_000)
    ox, oy = off[0] // nm, off[1] // nm
    rgb = coll[oy:oy + 640, ox:ox + 768].astype(np.int16)
    chans = [np.clip(255 - rgb[..., 2] * 1.1, 0, 255).astype(np.uint8),   # DAPI: nuclei
             np.clip(255 - rgb[..., 1], 0, 255).astype(np.uint8) // 2,    # FITC
             np.clip(rgb[..., 0] - rgb[..., 2] + 40, 0, 255).astype(np.uint8)]  # TRITC
    macro = macro_of(coll, ["FLASHSLIDE", "SCN400F test", "fluorescence"], "FS-SCN-0004")
    fmacro = np.ascontiguousarray(255 - macro[0][..., 2])  # a grey overview
    names = ["DAPI", "FITC", "TRITC"]
    pages = [(macro[0], 256, 2000), (macro[1], 256, 8000), (fmacro, 256, 2000)]
    dims = []
    for r in range(2):
        for c in range(3):
            m = chans[c] if r == 0 else downsample(np.dstack([chans[c]] * 3), 4)[..., 0]
            dims.append((m.shape[1], m.shape[0], f'r="{r}" c="{c}" ifd="{len(pages)}"'))
            pages.append((m, 256, nm * 4 ** r))
    chan_xml = "\n        <channelSettings>" + "".join(
        f'\n          <channel index="{i}" name="{n}" rgb="{col}">'
        f'<exposureTime>{t}</exposureTime></channel>'
        for i, (n, col, t) in enumerate(zip(names, ["#0000ff", "#00ff00", "#ff0000"],
                                            [40000, 120000, 200000]))) + "\n        </channelSettings>"
    fl_macro = image_xml("", "c1d2e3f4-0a1b-4c2d-8e3f-4a5b6c7d8e33", "2024-03-14T11:00:12.5Z",
                         [(fmacro.shape[1], fmacro.shape[0], 'r="0" c="0" ifd="2"')],
                         (coll_nm[0], coll_nm[1], 0, 0, 0), "0.25", "0.02", "fluorescence")
    xml = collection_xml("scn-fluorescence", "c1d2e3f4-0a1b-4c2d-8e3f-4a5b6c7d8e31", coll_nm,
                         "FS-SCN-0004", [
                             macro_xml("c1d2e3f4-0a1b-4c2d-8e3f-4a5b6c7d8e32", coll_nm, macro),
                             fl_macro,
                             image_xml("", "c1d2e3f4-0a1b-4c2d-8e3f-4a5b6c7d8e34",
                                       "2024-03-14T11:04:40.77Z", dims,
                                       (768 * nm, 640 * nm, off[0], off[1], 400), "20", "0.4",
                                       "fluorescence", chan_xml)])
    path = os.path.join(folder, name + ".scn")
    write_scn(path, xml, pages)
    return dict(name=name, format="scn", path=os.path.basename(path), reference="openslide",
                notes="fluorescence main image (3 channels, c=0..2); OpenSlide 4.0.1 "
                      "finds no brightfield main image",
                refuse="fluorescence",
                levels=[], regions=[], associated={})


def make(folder, source):
    return [slide_brightfield(folder, source), slide_two_regions(folder, source),
            slide_zstack(folder, source), slide_fluorescence(folder, source)]
