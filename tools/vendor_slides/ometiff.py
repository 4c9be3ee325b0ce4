"""OME-TIFF test slides (reference: tifffile's series[0] and its levels; OpenSlide has no
OME-TIFF reader, it takes tiled ones for generic TIFFs), laid out as Bio-Formats (bfconvert
-pyramid-resolutions) and QuPath's OME writer lay them out.

Every file's first ImageDescription is OME-XML (schema 2016-06, Bio-Formats style: the
"Warning: this comment is an OME-XML metadata block" comment, Creator, a root UUID, one
<Image> per series, <Pixels DimensionOrder="XYCZT" Interleaved=... Type=...> with
<Channel>s and <TiffData IFD PlaneCount> entries that count top-level IFDs only). Pixel
data tiled; PhotometricInterpretation RGB for 3-sample images, also where the JPEG tiles
are JFIF YCbCr (what Bio-Formats writes; tifffile then leaves libjpeg's colour guess, the
JFIF marker, in charge). XResolution/YResolution (pixels per cm) agree with PhysicalSize.

  ome-subifd-jpeg.ome.tif   brightfield RGB, classic little-endian TIFF. Image:0 "scan":
      1440x1200, SizeC=3 with one Channel SamplesPerPixel="3", Interleaved="true",
      PhysicalSizeX="0.499" PhysicalSizeY="0.502" (µm, X != Y), Objective
      NominalMagnification="20.0" through ObjectiveSettings. Level 0 is IFD 0
      (NewSubfileType 0) with a SubIFDs tag (330) of three reduced levels 720x600, 360x300,
      180x150 (NewSubfileType 1, each in its own SubIFD). Tiles 512x512 on every level
      (partial edge tiles; levels 2 and 3 one tile), JPEG: one complete JFIF YCbCr 4:2:0
      JPEG per tile (PIL quality 85, edge padding by repetition), no JPEGTables;
      photometric RGB (tifffile also writes a YCbCrSubSampling tag there, which a reader
      must ignore when photometric is RGB). A StructuredAnnotations MapAnnotation
      "openmicroscopy.org/PyramidResolution" lists the reduced sizes (informational;
      tifffile ignores it). Image:1 "macro" (IFD 1, 384x256 RGB, uncompressed strips, no
      SubIFDs) is tifffile's series[1], not part of series[0].
  ome-pages-pyramid.ome.tif   brightfield RGB, 768x576 level 0 (IFD 0) followed by
      384x288 and 192x144 as top-level IFDs 1 and 2 (NewSubfileType 1), deflate (zlib,
      Predictor 2: horizontal differencing), tiles 256x256 (the bottom row partial). The
      OME-XML has one Image whose TiffData names IFD 0, PlaneCount 1, PhysicalSizeX="499.0"
      PhysicalSizeY="501.0" PhysicalSize?Unit="nm".
      tifffile's OME series has one level: pyramids exist for it only as SubIFDs; IFDs 1
      and 2 belong to no series. The truth is that single level.
  ome-fluorescence-uint16.ome.tif   refused: three channels (DAPI, FITC, TRITC;
      SamplesPerPixel 1 each, with Excitation/EmissionWavelength), uint16 minisblack, one
      IFD per channel (TiffData IFD 0..2), each with a SubIFD 2x reduction; deflate.
      tifffile: axes CYX, shape (3, 384, 384), uint16, 2 levels. refuse "channels".
  ome-fluorescence-uint8.ome.tif    refused: the same three channels as uint8 (what a
      "uint8 with 3 channels" test alone would let through): axes CYX, shape
      (3, 384, 384), photometric minisblack. refuse "channels".
  ome-zstack-rgb.ome.tif    refused: brightfield RGB uint8 but SizeZ=3 (three focal
      planes, one IFD each, JPEG as above): tifffile axes ZYXS, shape (3, 384, 384, 3).
      refuse "z-planes".

A refused slide's `refuse` is a word its error message must contain.

Regions are level-0 coordinates on multiples of the level's downsample; the truth is the
tiles of the written file decoded here (PIL for JPEG, zlib for deflate), transparent outside
the level. The macro of ome-subifd-jpeg is its associated image (flashslide names an OME
image label, macro or thumbnail by its Name; tools/make_vendor_slides.py reads it with
tifffile as series[1])."""

import os
import uuid as uuidlib

import numpy as np
import tifffile

from slide_refs import downsample, label_image, overview_image, tiles_of
from .scn import decode_page, jpeg_tile

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
WARNING = ("<!-- Warning: this comment is an OME-XML metadata block, which contains crucial "
           "dimensional parameters and other important metadata. Please edit cautiously (if "
           "at all), and back up the original data before doing so. For more information, "
           "see the OME-TIFF web site: https://docs.openmicroscopy.org/latest/ome-model/"
           "ome-tiff/. -->")


def uid(name):
    return f"urn:uuid:{uuidlib.uuid5(uuidlib.NAMESPACE_URL, 'flashslide/' + name)}"


def ome_xml(name, images, extra=""):
    """images: already formatted <Image> elements; extra: Instrument / annotations."""
    head = (f'<?xml version="1.0" encoding="UTF-8"?>{WARNING}<OME xmlns="{OME_NS}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Creator="OME Bio-Formats '
            f'6.11.1" UUID="{uid(name)}" xsi:schemaLocation="{OME_NS} {OME_NS}/ome.xsd">')
    instrument, annotations = extra if extra else ("", "")
    # UTF-8 bytes: "µm" is not ASCII, and Bio-Formats writes the description as UTF-8
    return (head + instrument + "".join(images) + annotations + "</OME>").encode()


def tiffdata(fname, name, ifd, first=(0, 0, 0)):
    c, z, t = first
    return (f'<TiffData FirstC="{c}" FirstT="{t}" FirstZ="{z}" IFD="{ifd}" PlaneCount="1">'
            f'<UUID FileName="{fname}">{uid(name)}</UUID></TiffData>')


def pixels(idx, w, h, typ, c, z, channels, tds, phys=None, interleaved=True):
    ps = ""
    if phys:
        (px, py, unit) = phys
        ps = (f' PhysicalSizeX="{px}" PhysicalSizeXUnit="{unit}" PhysicalSizeY="{py}" '
              f'PhysicalSizeYUnit="{unit}"')
    bits = {"uint8": 8, "uint16": 16}[typ]
    return (f'<Pixels BigEndian="false" DimensionOrder="XYCZT" ID="Pixels:{idx}" '
            f'Interleaved="{"true" if interleaved else "false"}"{ps} SignificantBits="{bits}" '
            f'SizeC="{c}" SizeT="1" SizeX="{w}" SizeY="{h}" SizeZ="{z}" Type="{typ}">'
            + "".join(channels) + "".join(tds) + "</Pixels>")


def rgb_channel(idx):
    return f'<Channel ID="Channel:{idx}:0" SamplesPerPixel="3"><LightPath/></Channel>'


def write_tiled(tw, img, tile, compression, res, **kw):
    """One tiled directory; JPEG tiles encoded here (JFIF YCbCr) and stored with photometric
    RGB; deflate left to tifffile (zlib, horizontal-differencing predictor 2)."""
    rgb = img.ndim == 3
    args = dict(tile=(tile, tile), photometric="rgb" if rgb else "minisblack", metadata=None,
                software=False, resolution=(res[0], res[1]), resolutionunit="CENTIMETER", **kw)
    if compression == "jpeg":
        tiles, across, down = tiles_of(img, tile, tile, "edge")
        data = [jpeg_tile(tiles[(c, r)]) for r in range(down) for c in range(across)]
        tw.write(iter(data), shape=img.shape, dtype=np.uint8, compression="jpeg",
                 compressionargs={"outcolorspace": "RGB"}, **args)
    else:
        tw.write(img, compression="zlib", predictor=True, **args)


def res_of(mpp_x, mpp_y, ds=1):
    return (1e4 / (mpp_x * ds), 1e4 / (mpp_y * ds))


def level_truth(path, lossless):
    """Level 0 and its SubIFDs, found and decoded here (tifffile only parses each IFD)."""
    with tifffile.TiffFile(path) as tif:
        page0 = tif.pages[0]
        pages = [page0]
        for k, off in enumerate(page0.subifds or ()):
            tif.filehandle.seek(off)
            pages.append(tifffile.TiffPage(tif, index=(0, k + 1)))
        levels = []
        for p in pages:
            rgb = decode_page(p)
            levels.append(dict(rgb=rgb, mask=np.ones(rgb.shape[:2], bool), lossless=lossless))
    return levels


def slide_subifd_jpeg(folder, source):
    name, fname = "ome-subifd-jpeg", "ome-subifd-jpeg.ome.tif"
    mpp = (0.499, 0.502)
    l0 = source[700:1900, 500:1940]
    pyr = [l0] + [downsample(l0, 2 ** k) for k in (1, 2, 3)]
    label = label_image(["FLASHSLIDE", "OME-TIFF", "bfconvert"], "FS-OME-0001", 200, 100)
    macro = overview_image(source, label, 384, 256)
    mapann = ('<StructuredAnnotations><MapAnnotation ID="Annotation:Resolution:0" '
              'Namespace="openmicroscopy.org/PyramidResolution"><Value>'
              + "".join(f'<M K="{k}">{p.shape[1]} {p.shape[0]}</M>' for k, p in enumerate(pyr[1:], 1))
              + "</Value></MapAnnotation></StructuredAnnotations>")
    instrument = ('<Instrument ID="Instrument:0"><Objective ID="Objective:0:0" '
                  'NominalMagnification="20.0"/></Instrument>')
    img0 = ('<Image ID="Image:0" Name="scan"><InstrumentRef ID="Instrument:0"/>'
            '<ObjectiveSettings ID="Objective:0:0"/>'
            + pixels(0, 1440, 1200, "uint8", 3, 1, [rgb_channel(0)], [tiffdata(fname, name, 0)],
                     phys=(mpp[0], mpp[1], "µm"))
            + '<AnnotationRef ID="Annotation:Resolution:0"/></Image>')
    img1 = ('<Image ID="Image:1" Name="macro">'
            + pixels(1, 384, 256, "uint8", 3, 1, [rgb_channel(1)], [tiffdata(fname, name, 1)])
            + "</Image>")
    xml = ome_xml(name, [img0, img1], (instrument, mapann))
    path = os.path.join(folder, fname)
    with tifffile.TiffWriter(path, bigtiff=False, byteorder="<") as tw:
        write_tiled(tw, pyr[0], 512, "jpeg", res_of(*mpp), description=xml, subifds=3,
                    subfiletype=0)
        for k in (1, 2, 3):
            write_tiled(tw, pyr[k], 512, "jpeg", res_of(*mpp, 2 ** k), subfiletype=1)
        tw.write(macro, photometric="rgb", metadata=None, software=False, rowsperstrip=64)
    levels = level_truth(path, False)
    regions = [
        ("l0-origin", 0, 0, 0, 600, 600),           # crosses the 512 tile seams
        ("l0-right-edge", 0, 1200, 400, 240, 300),  # partial last tile column (1024..1440)
        ("l0-bottom-right", 0, 1300, 1100, 200, 200),  # past the level's end
        ("l1-whole", 1, 0, 0, 720, 600),
        ("l2-interior", 2, 400, 320, 200, 150),
        ("l3-whole", 3, 0, 0, 180, 150),
    ]
    return dict(name=name, format="ometiff", path=fname, reference="tifffile",
                notes="brightfield RGB, SubIFD pyramid of 4 levels (bfconvert/QuPath layout), "
                      "JFIF YCbCr JPEG tiles labelled photometric RGB, mpp 0.499 x 0.502, "
                      "20x; a macro as a second OME Image",
                levels=levels, regions=regions, associated={"macro": (macro, True)})


def slide_pages_pyramid(folder, source):
    name, fname = "ome-pages-pyramid", "ome-pages-pyramid.ome.tif"
    l0 = source[1500:2076, 800:1568]
    pyr = [l0, downsample(l0, 2), downsample(l0, 4)]
    img0 = ('<Image ID="Image:0" Name="pages-pyramid">'
            + pixels(0, 768, 576, "uint8", 3, 1, [rgb_channel(0)], [tiffdata(fname, name, 0)],
                     phys=("499.0", "501.0", "nm"))
            + "</Image>")
    xml = ome_xml(name, [img0])
    path = os.path.join(folder, fname)
    with tifffile.TiffWriter(path, bigtiff=False, byteorder="<") as tw:
        for k, p in enumerate(pyr):
            write_tiled(tw, p, 256, "deflate", res_of(0.499, 0.501, 2 ** k),
                        description=xml if k == 0 else None, subfiletype=1 if k else 0)
    levels = level_truth(path, True)  # level 0 only: page 0 has no SubIFDs
    regions = [
        ("l0-origin", 0, 0, 0, 512, 512),      # four tiles
        ("l0-interior", 0, 200, 150, 300, 250),  # crosses tile seams at 256 and 512
        ("l0-bottom-right", 0, 600, 400, 200, 200),  # past the level's end (768x576)
        ("l0-whole", 0, 0, 0, 768, 576),
    ]
    return dict(name=name, format="ometiff", path=fname, reference="tifffile",
                notes="reduced levels as top-level IFDs 1, 2 (NewSubfileType 1): tifffile reads "
                      "one level; deflate; PhysicalSize in nm (0.499 x 0.501 um)",
                levels=levels, regions=regions, associated={})


def fluor_channels(src):
    rgb = src.astype(np.float32)
    return [np.clip(255 - rgb[..., 2] * 1.1, 0, 255), np.clip(255 - rgb[..., 1], 0, 255) / 2,
            np.clip(rgb[..., 0] - rgb[..., 2] + 40, 0, 255)]


def fluor_xml(name, fname, typ, n):
    chans = "".join(
        f'<Channel ID="Channel:0:{i}" Name="{cn}" SamplesPerPixel="1" '
        f'ExcitationWavelength="{ex}" ExcitationWavelengthUnit="nm" EmissionWavelength="{em}" '
        f'EmissionWavelengthUnit="nm"><LightPath/></Channel>'
        for i, (cn, ex, em) in enumerate([("DAPI", 358, 461), ("FITC", 495, 519),
                                          ("TRITC", 557, 576)]))
    tds = [tiffdata(fname, name, i, (i, 0, 0)) for i in range(3)]
    return ome_xml(name, ['<Image ID="Image:0" Name="fluorescence">'
                          + pixels(0, n, n, typ, 3, 1, [chans], tds, phys=(0.325, 0.325, "µm"),
                                   interleaved=False) + "</Image>"])


def slide_fluorescence(folder, source, typ):
    name = f"ome-fluorescence-{typ}"
    fname = name + ".ome.tif"
    n = 384
    chans = fluor_channels(source[1000:1000 + n, 900:900 + n])
    scale = 257 if typ == "uint16" else 1
    planes = [(c * scale).astype(typ) for c in chans]
    path = os.path.join(folder, fname)
    with tifffile.TiffWriter(path, bigtiff=False, byteorder="<") as tw:
        for i, p in enumerate(planes):
            tw.write(p, tile=(128, 128), photometric="minisblack", compression="zlib",
                     metadata=None, software=False, subifds=1 if typ == "uint16" else 0,
                     description=fluor_xml(name, fname, typ, n) if i == 0 else None,
                     resolution=res_of(0.325, 0.325), resolutionunit="CENTIMETER")
            if typ == "uint16":
                tw.write(p[::2, ::2], tile=(128, 128), photometric="minisblack",
                         compression="zlib", metadata=None, software=False, subfiletype=1,
                         resolution=res_of(0.325, 0.325, 2), resolutionunit="CENTIMETER")
    return dict(name=name, format="ometiff", path=fname, reference="tifffile",
                notes=f"3-channel fluorescence ({typ}, one IFD per channel, SamplesPerPixel 1)",
                refuse="channels",
                levels=[], regions=[], associated={})


def slide_zstack(folder, source):
    name, fname = "ome-zstack-rgb", "ome-zstack-rgb.ome.tif"
    n = 384
    from PIL import Image, ImageFilter
    base = source[1800:1800 + n, 800:800 + n]
    planes = [np.asarray(Image.fromarray(base).filter(ImageFilter.GaussianBlur(r))) for r in (2, 0, 2)]
    tds = [tiffdata(fname, name, z, (0, z, 0)) for z in range(3)]
    xml = ome_xml(name, ['<Image ID="Image:0" Name="z-stack">'
                         + pixels(0, n, n, "uint8", 3, 3, [rgb_channel(0)], tds,
                                  phys=(0.25, 0.25, "µm")) + "</Image>"])
    path = os.path.join(folder, fname)
    with tifffile.TiffWriter(path, bigtiff=False, byteorder="<") as tw:
        for z, p in enumerate(planes):
            write_tiled(tw, p, 256, "jpeg", res_of(0.25, 0.25), description=xml if z == 0 else None)
    return dict(name=name, format="ometiff", path=fname, reference="tifffile",
                notes="brightfield RGB z-stack (SizeZ=3, one IFD per plane)",
                refuse="z-planes",
                levels=[], regions=[], associated={})


def make(folder, source):
    return [slide_subifd_jpeg(folder, source), slide_pages_pyramid(folder, source),
            slide_fluorescence(folder, source, "uint16"), slide_fluorescence(folder, source, "uint8"),
            slide_zstack(folder, source)]
