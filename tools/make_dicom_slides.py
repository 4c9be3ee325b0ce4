#!/usr/bin/env python3
"""Makes small DICOM WSI test series (VL Whole Slide Microscopy Image) from real pixels, with references.

    python3 tools/make_dicom_slides.py --out DIR [--shared ../shared/slides]

Pixels: level 0 of ../shared/slides/aperio/CMU-1-Small-Region.svs (read with tifffile; it
decodes that file exactly as OpenSlide does), cropped per series; without --shared a seeded
synthetic H&E-like image (tools/make_test_slides.py's he_like), so the script works without
../shared. Every file is a DICOM Part 10 file written with pydicom 3.0.2 (pip install
pydicom==3.0.2; the version this was made and checked with), explicit VR little endian, SOP
class 1.2.840.10008.5.1.4.1.1.77.1.6; file names are hashes of the SOP Instance UID, so they
do not say what a file holds (manifest.json does).

Writes into DIR, one folder per series (one Series Instance UID each):
  full-jpeg/    TILED_FULL, JPEG baseline frames (1.2.840.10008.1.2.4.50, YBR_FULL_422 with
                4:2:2 chroma, quality 85), tiles 256x256, three levels 1536x1280, 768x640,
                384x320 (edge tiles partial on the smaller two). Level 0 is a concatenation of
                two instances (ConcatenationUID, InConcatenationNumber 1 and 2,
                ConcatenationFrameOffsetNumber 0 and 17: the split falls inside a tile row).
                Offset tables: basic filled (level 0 part 1), basic empty (level 0 part 2,
                level 1), extended (level 2, ExtendedOffsetTable). LABEL (YBR 4:2:2 JPEG),
                OVERVIEW (YBR 4:2:0 JPEG) and THUMBNAIL (an RGB-colour-space JPEG, Adobe
                marker, photometric RGB); an sRGB ICC profile in OpticalPathSequence; a
                BarcodeValue. Also one decoy file of another series (a 64x64 VOLUME) that a
                reader must leave out.
  sparse-jpeg/  TILED_SPARSE, tiles 128x128, two levels 1024x768 and 512x384. Level 0: YBR
                4:2:0 JPEG labelled YBR_FULL_422, every 5th tile (raster index % 5 == 4) and
                tile row 3 absent, frames stored in column-major order (only the per-frame
                PlanePositionSlideSequence says where each goes; FrameContentSequence holds
                the dimension index values), basic offset table filled.
                Level 1: RGB-colour-space JPEG with photometric RGB, tile (3, 0) absent,
                frames in reverse raster order, basic offset table empty.
  positioned/   TILED_SPARSE with frames where a scanner's camera fields fall, not on the tile
                grid: level 0 720x560, JPEG (YBR 4:2:0) frames of 128x128 every 112 columns
                and 120 rows, level 1 360x280, uncompressed frames of 64x64 every 56 and 60;
                each corner moved by up to 2 pixels, one field missing on each level, and
                each field tinted -24, 0 or +24 so that which of two overlapping frames
                shows is visible. The decode below paints them in OpenSlide's tilemap order
                (the frame whose corner lies in the last grid cell, row by row, shows;
                then the lowest, rightmost, first stored), as flashslide documents.
  native/       TILED_FULL, uncompressed frames (1.2.840.10008.1.2.1, RGB), tiles 112 wide by
                96 high (neither divides the image: edge tiles partial, padded with magenta
                that must never show), levels 384x256 and 192x128, pixel spacing 0.498 um
                between rows and 0.502 um between columns (mpp-y != mpp-x), an uncompressed
                LABEL.
  jpeg2000/     TILED_FULL, tiles 256x256, levels 400x300 (JPEG 2000 lossless,
                1.2.840.10008.1.2.4.90, reversible 5/3 without a colour transform: RGB) and
                200x150 (JPEG 2000, 1.2.840.10008.1.2.4.91, irreversible 9/7 with the ICT:
                YBR_ICT), a THUMBNAIL in lossless JPEG 2000 with the RCT (YBR_RCT). Frames
                are raw J2K codestreams made by imagecodecs.jpeg2k_encode (OpenJPEG).
  references/<series>/
                <name>.png where OpenSlide and the decode below agree byte for byte (png and
                decoded_png then name the same file), else <name>.openslide.png: what
                OpenSlide read_region returns (RGBA, non-premultiplied as openslide-python
                gives it) and <name>.decoded.png: the same region assembled here
                independently (pydicom parses the files written, frames placed by
                TILED_FULL order or by their per-frame positions, imagecodecs decodes:
                libjpeg-turbo told the colour space by the photometric interpretation,
                OpenJPEG undoing the codestream's RCT/ICT itself; missing tiles and pixels
                outside the level transparent), properties.json (every OpenSlide property).
  manifest.json series (files, roles, transfer syntaxes, which file was passed to OpenSlide,
                what OpenSlide made of it or its error) and entries (one per region or
                associated image: series, file, kind, name, level, x, y, w, h, png,
                decoded_png, rgba_sha256, decoded_rgba_sha256, lossless, openslide_failed,
                openslide_error, the mean and max absolute difference of the two).

TILED_FULL instances carry no PerFrameFunctionalGroupsSequence (libdicom would take frame
positions there as a sparse layout). LossyImageCompression is "01" on every file made from
the SVS (its pixels were JPEG-compressed once), whatever the file's own transfer syntax.

Region x, y are level-0 coordinates, w, h pixels of the level, as in OpenSlide's read_region;
every level here is exactly 2 or 4 times smaller and every region at a level > 0 starts on a
multiple of its downsample, so OpenSlide does not resample. Lossless entries (native, JPEG
2000 lossless) must match byte for byte; the decode of lossless frames is also checked
against the source pixels here.

Exit code 3 when a needed Python package is missing (tests then report a skip). Without
openslide-python the OpenSlide references are left out (manifest "openslide": null).
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys

try:
    import numpy as np
    import imagecodecs
    from PIL import ImageCms
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
    from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit,
                             PYDICOM_IMPLEMENTATION_UID, VLWholeSlideMicroscopyImageStorage, generate_uid)
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"missing Python package: {e.name} (pip install pydicom==3.0.2 tifffile imagecodecs numpy pillow)",
          file=sys.stderr)
    sys.exit(3)

try:
    import openslide
except ImportError:
    openslide = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slide_refs import (MPP0, SEED, camera_fields, compare, crop_rgba, downsample, label_image,  # noqa: E402
                        overview_image, resize, save_png, sha, source_pixels, tiles_of)
DATE, TIME = "20261125", "120000"

# Frame codecs: transfer syntax, photometric interpretation, encoder, whether lossless.
CODECS = {
    "jpeg422": dict(ts=JPEGBaseline8Bit, pi="YBR_FULL_422", lossy="ISO_10918_1",
                    encode=lambda t: imagecodecs.jpeg8_encode(t, 85, subsampling="422")),
    "jpeg420": dict(ts=JPEGBaseline8Bit, pi="YBR_FULL_422", lossy="ISO_10918_1",
                    encode=lambda t: imagecodecs.jpeg8_encode(t, 85, subsampling="420")),
    "jpeg-rgb": dict(ts=JPEGBaseline8Bit, pi="RGB", lossy="ISO_10918_1",
                     encode=lambda t: imagecodecs.jpeg8_encode(t, 85, colorspace="RGB", outcolorspace="RGB")),
    "native": dict(ts=ExplicitVRLittleEndian, pi="RGB", lossy=None, encode=lambda t: t.tobytes()),
    "j2k-lossless": dict(ts=JPEG2000Lossless, pi="RGB", lossy=None,
                         encode=lambda t: imagecodecs.jpeg2k_encode(t, level=0, codecformat="J2K",
                                                                    reversible=True, mct=False)),
    "j2k-lossless-rct": dict(ts=JPEG2000Lossless, pi="YBR_RCT", lossy=None,
                             encode=lambda t: imagecodecs.jpeg2k_encode(t, level=0, codecformat="J2K",
                                                                        reversible=True, mct=True)),
    "j2k-lossy": dict(ts=JPEG2000, pi="YBR_ICT", lossy="ISO_15444_1",
                      encode=lambda t: imagecodecs.jpeg2k_encode(t, level=42, codecformat="J2K",
                                                                 reversible=False, mct=True)),
}
IMAGE_TYPES = {
    "VOLUME0": ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"],
    "VOLUME": ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"],
    "LABEL": ["ORIGINAL", "PRIMARY", "LABEL", "NONE"],
    "OVERVIEW": ["ORIGINAL", "PRIMARY", "OVERVIEW", "NONE"],
    "THUMBNAIL": ["DERIVED", "PRIMARY", "THUMBNAIL", "RESAMPLED"],
}
OPENSLIDE_NAMES = {"LABEL": "label", "OVERVIEW": "macro", "THUMBNAIL": "thumbnail"}


def sparse_l0_missing(col, row):
    return (row * 8 + col) % 5 == 4 or row == 3


# Each series: a crop (x, y, w, h) of the source, tile (w, h), layout, levels (downsample,
# codec, how frames are stored), associated images, the file handed to OpenSlide, regions.
SERIES = [
    dict(name="full-jpeg", crop=(512, 768, 1536, 1280), tile=(256, 256), layout="TILED_FULL",
         levels=[dict(ds=1, codec="jpeg422", split=17, bot=["filled", "empty"]),
                 dict(ds=2, codec="jpeg422", bot=["empty"]),
                 dict(ds=4, codec="jpeg422", bot=["extended"])],
         associated=[("LABEL", "jpeg422"), ("OVERVIEW", "jpeg420"), ("THUMBNAIL", "jpeg-rgb")],
         icc=True, barcode="FLASHSLIDE-DCM-0001", decoy=True, passed="LABEL",
         regions=[("L0-origin-256", 0, 0, 0, 256, 256),
                  ("L0-odd", 0, 123, 77, 257, 129),
                  ("L0-concat-boundary", 0, 1152, 576, 256, 256),
                  ("L0-edge-overhang", 0, 1436, 1220, 256, 256),
                  ("L1-aligned", 1, 512, 256, 256, 160),
                  ("L1-edge-partial-tile", 1, 1280, 1024, 256, 128),
                  ("L2-top-full", 2, 0, 0, 384, 320)]),
    dict(name="sparse-jpeg", crop=(100, 1000, 1024, 768), tile=(128, 128), layout="TILED_SPARSE",
         levels=[dict(ds=1, codec="jpeg420", bot=["filled"], missing=sparse_l0_missing, order="column-major"),
                 dict(ds=2, codec="jpeg-rgb", bot=["empty"], missing=lambda c, r: (c, r) == (3, 0),
                      order="reverse")],
         associated=[], passed="VOLUME1",
         regions=[("L0-origin-256", 0, 0, 0, 256, 256),
                  ("L0-odd", 0, 123, 77, 257, 129),
                  ("L0-missing-tile", 0, 448, 0, 256, 192),
                  ("L0-missing-row", 0, 620, 300, 400, 300),
                  ("L0-edge-overhang", 0, 924, 708, 256, 256),
                  ("L1-missing-tile", 1, 640, 0, 256, 192),
                  ("L1-top-full", 1, 0, 0, 512, 384)]),
    dict(name="positioned", crop=(800, 1400, 720, 560), tile=(128, 128), layout="TILED_SPARSE",
         levels=[dict(ds=1, codec="jpeg420", bot=["filled"],
                      fields=dict(step=(112, 120), missing=lambda c, r: (c, r) == (2, 1))),
                 dict(ds=2, codec="native", bot=["none"], tile=(64, 64),
                      fields=dict(step=(56, 60), missing=lambda c, r: (c, r) == (4, 3)))],
         associated=[], passed="VOLUME0",
         regions=[("L0-origin-256", 0, 0, 0, 256, 256),
                  ("L0-odd", 0, 123, 77, 257, 129),
                  ("L0-missing-field", 0, 200, 100, 160, 160),
                  ("L0-edge-overhang", 0, 600, 450, 256, 256),
                  ("L0-whole", 0, 0, 0, 720, 560),
                  ("L1-missing-field", 1, 400, 300, 128, 128),
                  ("L1-whole", 1, 0, 0, 360, 280)]),
    dict(name="native", crop=(1500, 1500, 384, 256), tile=(112, 96), layout="TILED_FULL",
         spacing=(0.000498, 0.000502),
         levels=[dict(ds=1, codec="native", bot=["none"]), dict(ds=2, codec="native", bot=["none"])],
         associated=[("LABEL", "native")], label_size=(128, 96), passed="VOLUME0",
         regions=[("L0-origin-256", 0, 0, 0, 256, 256),
                  ("L0-odd", 0, 123, 77, 257, 129),
                  ("L0-partial-tiles", 0, 300, 200, 84, 56),
                  ("L0-edge-overhang", 0, 300, 200, 256, 256),
                  ("L1-edge-overhang", 1, 300, 200, 100, 100),
                  ("L1-top-full", 1, 0, 0, 192, 128)]),
    dict(name="jpeg2000", crop=(1450, 1500, 400, 300), tile=(256, 256), layout="TILED_FULL",
         levels=[dict(ds=1, codec="j2k-lossless", bot=["filled"]), dict(ds=2, codec="j2k-lossy", bot=["empty"])],
         associated=[("THUMBNAIL", "j2k-lossless-rct")], passed="THUMBNAIL",
         regions=[("L0-origin-256", 0, 0, 0, 256, 256),
                  ("L0-odd", 0, 123, 77, 257, 129),
                  ("L0-edge-overhang", 0, 300, 240, 256, 256),
                  ("L1-aligned", 1, 256, 128, 64, 64),
                  ("L1-top-full", 1, 0, 0, 200, 150)]),
]


# ---- DICOM writing ---------------------------------------------------------------------------

def uid(*parts):
    return generate_uid(entropy_srcs=[str(SEED), *map(str, parts)])


def ds_str(v):
    s = format(float(v), ".10g")
    assert len(s) <= 16, s
    return s


def _code(value, scheme, meaning):
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def srgb_icc():
    """LittleCMS's sRGB profile with a fixed creation date (bytes 24-35), so runs are byte-identical."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = struct.pack(">6H", 2026, 11, 25, 12, 0, 0)
    return bytes(icc)


def write_instance(folder, ctx, *, flavor, codec, img, tile, layout, spacing, instance_number,
                   bot="empty", present=None, order="raster", concat=None, level_index=0, fields=None):
    """Writes one instance; returns a description of it for the manifest.

    img: the level's pixels (H, W, 3); tile (w, h); present(col, row) -> bool for sparse;
    fields: frames at camera-field positions instead of the tile grid (camera_fields);
    concat: (uid, source_uid, number, total, first_frame, frame_count) for a concatenation member."""
    spec = CODECS[codec]
    H, W = img.shape[:2]
    tw, th = tile
    tiles, across, down = tiles_of(img, tw, th, (255, 0, 255) if codec == "native" else "edge")
    corners = {p: (p[0] * tw, p[1] * th) for p in tiles}
    if fields:
        tiles, corners = camera_fields(img, tw, th, fields)
    positions = sorted(tiles, key=lambda p: (p[1], p[0]))
    if layout == "TILED_SPARSE":
        positions = [p for p in positions if present is None or present(*p)]
        if order == "column-major":
            positions.sort(key=lambda p: (p[0], p[1]))
        elif order == "reverse":
            positions.reverse()
    if concat:
        positions = positions[concat[4]:concat[4] + concat[5]]
    frames = [spec["encode"](tiles[p]) for p in positions]

    image_type = IMAGE_TYPES["VOLUME0" if flavor == "VOLUME" and level_index == 0 else flavor]
    sop = uid(ctx["name"], flavor, level_index, instance_number)
    path = os.path.join(folder, hashlib.sha1(sop.encode()).hexdigest()[:12] + ".dcm")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = VLWholeSlideMicroscopyImageStorage
    fm.MediaStorageSOPInstanceUID = sop
    fm.TransferSyntaxUID = spec["ts"]
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "FLASHSLIDE_MK"

    ds = Dataset()
    ds.file_meta = fm
    ds.ImageType = image_type
    ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = TIME
    ds.AcquisitionDateTime = DATE + TIME
    ds.AccessionNumber = ""
    ds.Modality = "SM"
    ds.Manufacturer = "flashslide"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = f"flashslide test series {ctx['name']}"
    ds.ManufacturerModelName = "make_dicom_slides.py"
    ds.VolumetricProperties = "VOLUME"
    ds.PatientName = "Test^Slide"
    ds.PatientID = "FS-TEST-0001"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = f"pydicom {pydicom.__version__}"
    ds.StudyInstanceUID = ctx["study_uid"]
    ds.SeriesInstanceUID = ctx["series_uid"]
    ds.StudyID = "FS1"
    ds.SeriesNumber = ctx["series_number"]
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = ctx["frame_of_reference_uid"]
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.DimensionOrganizationType = layout
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = spec["pi"]
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = th, tw
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.BurnedInAnnotation = "YES" if flavor in ("LABEL", "OVERVIEW") else "NO"
    ds.SpecimenLabelInImage = "YES" if flavor in ("LABEL", "OVERVIEW") else "NO"
    methods = list(ctx["source_lossy"])
    if spec["lossy"] and spec["lossy"] not in methods:
        methods.append(spec["lossy"])
    ds.LossyImageCompression = "01" if methods else "00"
    if methods:
        ds.LossyImageCompressionMethod = methods
        if spec["lossy"]:
            ds.LossyImageCompressionRatio = ds_str(round(len(frames) * tw * th * 3 / sum(map(len, frames)), 2))
    row_sp, col_sp = spacing
    ds.ImagedVolumeWidth = W * col_sp
    ds.ImagedVolumeHeight = H * row_sp
    ds.ImagedVolumeDepth = 4.0
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = W, H
    ds.TotalPixelMatrixFocalPlanes = 1
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = ds_str(20.0)
    origin.YOffsetInSlideCoordinateSystem = ds_str(40.0)
    ds.TotalPixelMatrixOriginSequence = [origin]
    orientation = [0, -1, 0, -1, 0, 0]
    ds.ImageOrientationSlide = [ds_str(v) for v in orientation]
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"
    ds.AcquisitionContextSequence = []
    ds.ContainerIdentifier = "FS-SLIDE-0001"
    ds.IssuerOfTheContainerIdentifierSequence = []
    ds.ContainerTypeCodeSequence = [_code("433466003", "SCT", "Microscope slide")]
    specimen = Dataset()
    specimen.SpecimenIdentifier = "FS-SPECIMEN-0001"
    specimen.SpecimenUID = ctx["specimen_uid"]
    specimen.IssuerOfTheSpecimenIdentifierSequence = []
    specimen.SpecimenPreparationSequence = []
    ds.SpecimenDescriptionSequence = [specimen]
    ds.NumberOfOpticalPaths = 1
    op = Dataset()
    op.OpticalPathIdentifier = "1"
    op.OpticalPathDescription = "brightfield"
    op.IlluminationTypeCodeSequence = [_code("111744", "DCM", "Brightfield illumination")]
    op.IlluminationColorCodeSequence = [_code("414298005", "SCT", "Full Spectrum")]
    op.ObjectiveLensPower = ds_str(20)
    if ctx["icc"]:
        op.ICCProfile = ctx["icc"]
        op.ColorSpace = "SRGB"
    ds.OpticalPathSequence = [op]
    if ctx.get("barcode"):
        ds.BarcodeValue = ctx["barcode"]
    if flavor == "LABEL":
        ds.LabelText = "flashslide DICOM test"
        ds.BarcodeValue = ctx.get("barcode") or "FLASHSLIDE-DCM"

    dim_org = uid(ctx["name"], "dimension-organization")
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dim_org
    index = []
    for kw in ("RowPositionInTotalImagePixelMatrix", "ColumnPositionInTotalImagePixelMatrix"):
        item = Dataset()
        item.DimensionOrganizationUID = dim_org
        item.DimensionIndexPointer = pydicom.datadict.tag_for_keyword(kw)
        item.FunctionalGroupPointer = pydicom.datadict.tag_for_keyword("PlanePositionSlideSequence")
        index.append(item)
    ds.DimensionIndexSequence = index

    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [ds_str(row_sp), ds_str(col_sp)]
    measures.SliceThickness = ds_str(0.004)
    shared.PixelMeasuresSequence = [measures]
    frame_type = Dataset()
    frame_type.FrameType = image_type
    shared.WholeSlideMicroscopyImageFrameTypeSequence = [frame_type]
    path_id = Dataset()
    path_id.OpticalPathIdentifier = "1"
    shared.OpticalPathIdentificationSequence = [path_id]
    ds.SharedFunctionalGroupsSequence = [shared]

    if layout == "TILED_SPARSE":
        # Frame Content (dimension index values: 1-based ranks of the frame's row and column
        # positions among those present, as highdicom writes them) and Plane Position (Slide)
        rows_present = sorted({r for _, r in positions})
        cols_present = sorted({c for c, _ in positions})
        per_frame = []
        for c, r in positions:
            pos = Dataset()
            col_px, row_px = corners[(c, r)]  # 0-based offsets of the tile's top left pixel
            # slide coordinates: origin + column offset along the row direction + row offset along the column direction
            along_row, along_col = col_px * col_sp, row_px * row_sp
            pos.XOffsetInSlideCoordinateSystem = ds_str(20.0 + along_row * orientation[0] + along_col * orientation[3])
            pos.YOffsetInSlideCoordinateSystem = ds_str(40.0 + along_row * orientation[1] + along_col * orientation[4])
            pos.ZOffsetInSlideCoordinateSystem = ds_str(0.0)
            pos.ColumnPositionInTotalImagePixelMatrix = col_px + 1
            pos.RowPositionInTotalImagePixelMatrix = row_px + 1
            item = Dataset()
            content = Dataset()
            content.DimensionIndexValues = [rows_present.index(r) + 1, cols_present.index(c) + 1]
            item.FrameContentSequence = [content]
            item.PlanePositionSlideSequence = [pos]
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame

    if concat:
        c_uid, c_source, number, total, first, _count = concat
        ds.ConcatenationUID = c_uid
        ds.SOPInstanceUIDOfConcatenationSource = c_source
        ds.InConcatenationNumber = number
        ds.InConcatenationTotalNumber = total
        ds.ConcatenationFrameOffsetNumber = first

    if spec["ts"] == ExplicitVRLittleEndian:
        data = b"".join(frames)
        ds.PixelData = data + b"\0" * (len(data) & 1)
        ds["PixelData"].VR = "OB"
    else:
        if bot == "extended":
            data, eot, eot_lengths = encapsulate_extended(frames)
            ds.ExtendedOffsetTable = eot
            ds.ExtendedOffsetTableLengths = eot_lengths
        else:
            data = encapsulate(frames, has_bot=bot == "filled")
        ds.PixelData = data
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return dict(file=os.path.basename(path), flavor=flavor, image_type="\\".join(image_type),
                level=level_index if flavor == "VOLUME" else None, sop_instance_uid=sop,
                transfer_syntax=str(spec["ts"]), photometric=spec["pi"], codec=codec, layout=layout,
                width=W, height=H, tile_w=tw, tile_h=th, frames=len(frames),
                offset_table=bot if spec["ts"] != ExplicitVRLittleEndian else "none (native)",
                frame_order=order if layout == "TILED_SPARSE" else "raster",
                concatenation=None if not concat else dict(uid=concat[0], number=concat[2], total=concat[3],
                                                           frame_offset=concat[4]),
                lossless=spec["lossy"] is None, bytes=os.path.getsize(path))


def write_series(out, s, number, source, source_info):
    folder = os.path.join(out, s["name"])
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    x0, y0, w0, h0 = s["crop"]
    level0 = np.ascontiguousarray(source[y0:y0 + h0, x0:x0 + w0])
    spacing0 = s.get("spacing", (MPP0 / 1000, MPP0 / 1000))
    ctx = dict(name=s["name"], study_uid=uid("study"), series_uid=uid(s["name"], "series"),
               frame_of_reference_uid=uid(s["name"], "frame-of-reference"), specimen_uid=uid("specimen"),
               series_number=number, icc=srgb_icc() if s.get("icc") else None, barcode=s.get("barcode"),
               source_lossy=["ISO_10918_1"] if source_info["kind"] == "file" else [])
    files, truth = [], {}
    instance = 1
    for li, lv in enumerate(s["levels"]):
        img = downsample(level0, lv["ds"])
        if not lv.get("fields"):  # camera fields are tinted: not the level's pixels
            truth[("VOLUME", li)] = img
        spacing = (spacing0[0] * lv["ds"], spacing0[1] * lv["ds"])
        missing = lv.get("missing")
        common = dict(flavor="VOLUME", codec=lv["codec"], img=img, tile=lv.get("tile", s["tile"]), layout=s["layout"],
                      spacing=spacing, level_index=li, order=lv.get("order", "raster"), fields=lv.get("fields"),
                      present=None if missing is None else (lambda c, r, m=missing: not m(c, r)))
        if lv.get("split"):
            across = -(-img.shape[1] // s["tile"][0])
            down = -(-img.shape[0] // s["tile"][1])
            n = across * down
            c_uid, c_source = uid(s["name"], "concatenation", li), uid(s["name"], "concatenation-source", li)
            parts = [(0, lv["split"]), (lv["split"], n - lv["split"])]
            for k, (first, count) in enumerate(parts):
                files.append(write_instance(folder, ctx, instance_number=instance, bot=lv["bot"][k],
                                            concat=(c_uid, c_source, k + 1, len(parts), first, count), **common))
                instance += 1
        else:
            files.append(write_instance(folder, ctx, instance_number=instance, bot=lv["bot"][0], **common))
            instance += 1
    label = label_image(["flashslide", "DICOM test", s["name"]], ctx["barcode"] or s["name"],
                        *s.get("label_size", (192, 160)))
    for flavor, codec in s["associated"]:
        if flavor == "LABEL":
            img, spacing = label, (0.15, 0.15)
        elif flavor == "OVERVIEW":
            img, spacing = overview_image(source, label, 504, 168), (0.15, 0.15)
        else:
            f = 8 if level0.shape[1] > 1000 else 4
            img = resize(level0, level0.shape[1] // f, level0.shape[0] // f)
            spacing = (spacing0[0] * f, spacing0[1] * f)
        truth[(flavor, 0)] = img
        files.append(write_instance(folder, ctx, flavor=flavor, codec=codec, img=img,
                                    tile=(img.shape[1], img.shape[0]), layout="TILED_FULL", spacing=spacing,
                                    instance_number=instance))
        instance += 1
    if s.get("decoy"):
        decoy_ctx = dict(ctx, name=s["name"] + "-decoy", series_uid=uid(s["name"], "decoy-series"),
                         series_number=number + 100)
        img = downsample(level0, 20)[:64, :64]
        d = write_instance(folder, decoy_ctx, flavor="VOLUME", codec="jpeg422", img=img,
                           tile=(64, 64), layout="TILED_FULL", spacing=(spacing0[0] * 24, spacing0[1] * 24),
                           instance_number=1)
        d["decoy"] = "another Series Instance UID in the same folder: not part of this slide"
        files.append(d)
    return folder, files, truth, ctx


# ---- independent decode ---------------------------------------------------------------------

def decode_frame(ds, data):
    ts = ds.file_meta.TransferSyntaxUID
    rows, cols = ds.Rows, ds.Columns
    if ts == ExplicitVRLittleEndian:
        tile = np.frombuffer(data, np.uint8, count=rows * cols * 3).reshape(rows, cols, 3)
    elif ts == JPEGBaseline8Bit:
        # The photometric interpretation, not the JPEG header, says what the components are
        # (as OpenSlide does): YBR_* -> libjpeg-turbo's YCbCr->RGB, RGB -> no conversion.
        space = {"YBR_FULL_422": "YCBCR", "YBR_FULL": "YCBCR", "RGB": "RGB"}[ds.PhotometricInterpretation]
        tile = imagecodecs.jpeg8_decode(data, colorspace=space, outcolorspace="RGB")
    elif ts in (JPEG2000Lossless, JPEG2000):
        # the codestream's COD marker says whether RCT/ICT was applied; OpenJPEG undoes it
        tile = imagecodecs.jpeg2k_decode(data)
    else:
        raise ValueError(f"unexpected transfer syntax {ts}")
    assert tile.shape == (rows, cols, 3), (tile.shape, rows, cols)
    return tile


def frames_of(ds):
    n = int(ds.get("NumberOfFrames", 1))
    if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
        size = ds.Rows * ds.Columns * 3
        return [ds.PixelData[i * size:(i + 1) * size] for i in range(n)]
    eot = None
    if "ExtendedOffsetTable" in ds:
        eot = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    return list(generate_frames(ds.PixelData, number_of_frames=n, extended_offsets=eot))


def frame_origins(ds, across):
    """0-based (x, y) of each frame's top left pixel in the total pixel matrix."""
    n = int(ds.get("NumberOfFrames", 1))
    if ds.get("DimensionOrganizationType", "TILED_SPARSE") == "TILED_FULL":
        first = int(ds.get("ConcatenationFrameOffsetNumber", 0))
        return [((first + i) % across * ds.Columns, (first + i) // across * ds.Rows) for i in range(n)]
    out = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        pos = item.PlanePositionSlideSequence[0]
        out.append((pos.ColumnPositionInTotalImagePixelMatrix - 1, pos.RowPositionInTotalImagePixelMatrix - 1))
    return out


def read_back(folder, series_uid):
    """The series as this script reads it: {(flavor, level): (rgb, present mask)}; levels by width, largest first."""
    groups = {}
    for name in sorted(os.listdir(folder)):
        ds = pydicom.dcmread(os.path.join(folder, name))
        if ds.SeriesInstanceUID != series_uid:
            continue
        flavor = ds.ImageType[2]
        key = (flavor, ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows)
        groups.setdefault(key, []).append(ds)
    out = {}
    volumes = sorted((k for k in groups if k[0] == "VOLUME"), key=lambda k: -k[1])
    for key in list(volumes) + [k for k in groups if k[0] != "VOLUME"]:
        flavor, W, H = key
        level = volumes.index(key) if flavor == "VOLUME" else 0
        rgb = np.zeros((H, W, 3), np.uint8)
        mask = np.zeros((H, W), bool)
        placed = []
        for ds in sorted(groups[key], key=lambda d: int(d.get("InConcatenationNumber", 1))):
            across = -(-W // ds.Columns)
            for (x, y), data in zip(frame_origins(ds, across), frames_of(ds)):
                placed.append((x, y, ds, data))
        # Where frames overlap, the one whose corner lies in the last cell of the tile grid
        # (row by row) shows, then the lowest, rightmost, first stored (OpenSlide's tilemap
        # order: cells painted from the bottom-right with SATURATE, a pixel once painted
        # stays): painted last here. Of frames at one corner the first stored is kept.
        tw, th = placed[0][2].Columns, placed[0][2].Rows
        placed.sort(key=lambda f: (-(f[1] // th), -(f[0] // tw), -f[1], -f[0]))
        kept = [f for i, f in enumerate(placed) if i == 0 or f[:2] != placed[i - 1][:2]]
        for x, y, ds, data in reversed(kept):
            tile = decode_frame(ds, data)
            w, h = min(ds.Columns, W - x), min(ds.Rows, H - y)
            rgb[y:y + h, x:x + w] = tile[:h, :w]
            mask[y:y + h, x:x + w] = True
        out[(flavor, level)] = (rgb, mask)
    return out


# ---- references -----------------------------------------------------------------------------


def openslide_series(path, folder, files, refdir, rel):
    """Opens the series through one file; returns (slide or None, slide facts for the manifest)."""
    info = dict(library=getattr(openslide, "__library_version__", None))
    try:
        slide = openslide.OpenSlide(path)
    except Exception as e:  # OpenSlideError, OpenSlideUnsupportedFormatError
        info.update(opened=False, error=f"{type(e).__name__}: {e}")
        return None, info
    props = dict(slide.properties)
    with open(os.path.join(refdir, "properties.json"), "w") as f:
        json.dump(props, f, indent=1, sort_keys=True)
    profile = slide.color_profile
    icc = profile.tobytes() if profile is not None else None
    info.update(opened=True, vendor=props.get("openslide.vendor"), level_count=slide.level_count,
                level_dimensions=[list(d) for d in slide.level_dimensions],
                level_downsamples=list(slide.level_downsamples),
                tile_sizes=[[int(props.get(f"openslide.level[{i}].tile-width", 0)),
                             int(props.get(f"openslide.level[{i}].tile-height", 0))] for i in range(slide.level_count)],
                associated=sorted(slide.associated_images.keys()),
                mpp_x=props.get("openslide.mpp-x"), mpp_y=props.get("openslide.mpp-y"),
                objective_power=props.get("openslide.objective-power"), barcode=props.get("openslide.barcode"),
                quickhash=props.get("openslide.quickhash-1"),
                icc_profile_bytes=len(icc) if icc else None,
                icc_profile_sha256=hashlib.sha256(icc).hexdigest() if icc else None,
                properties=f"{rel}/properties.json")
    # OpenSlide opens a series given any of its files: check that every other file gives the same slide
    same = {}
    for f in files:
        if f.get("decoy") or f["file"] == os.path.basename(path):
            continue
        try:
            other = openslide.OpenSlide(os.path.join(folder, f["file"]))
            same[f["file"]] = ([list(d) for d in other.level_dimensions] == info["level_dimensions"] and
                               sorted(other.associated_images.keys()) == info["associated"])
            other.close()
        except Exception as e:
            same[f["file"]] = f"{type(e).__name__}: {e}"
    info["opens_from_every_file"] = all(v is True for v in same.values())
    if not info["opens_from_every_file"]:
        info["opened_from_other_files"] = same
    decoys = [f["file"] for f in files if f.get("decoy")]
    for d in decoys:
        try:
            other = openslide.OpenSlide(os.path.join(folder, d))
            info["decoy_opened_alone"] = [list(x) for x in other.level_dimensions]
            other.close()
        except Exception as e:
            info["decoy_opened_alone"] = f"{type(e).__name__}: {e}"
    return slide, info


def references(out, s, folder, files, truth, ctx, entries):
    name = s["name"]
    rel = f"references/{name}"
    refdir = os.path.join(out, rel)
    if os.path.isdir(refdir):
        shutil.rmtree(refdir)
    os.makedirs(refdir)
    passed = next(f for f in files if not f.get("decoy") and
                  (f["flavor"] == s["passed"] or (f["flavor"] == "VOLUME" and s["passed"] == f"VOLUME{f['level']}")))
    decoded = read_back(folder, ctx["series_uid"])
    # lossless frames must decode to the very pixels written
    for f in files:
        key = (f["flavor"], f["level"] or 0)
        if f["lossless"] and not f.get("decoy") and key in truth:
            rgb, mask = decoded[key]
            assert np.array_equal(rgb[mask], truth[key][mask]), f"{name} {key}: lossless decode differs from the source"
    slide, info = (None, None) if openslide is None else openslide_series(
        os.path.join(folder, passed["file"]), folder, files, refdir, rel)
    series_info = dict(series=name, folder=name, series_instance_uid=ctx["series_uid"], file_passed=passed["file"],
                       file_passed_role=s["passed"], crop_of_source=list(s["crop"]), files=files, openslide=info,
                       size_bytes=sum(f["bytes"] for f in files))

    def entry(kind, ename, level, x, y, w, h, dec_rgba, lossless, read):
        e = dict(series=name, file=f"{name}/{passed['file']}", kind=kind, name=ename, level=level,
                 x=x, y=y, w=w, h=h, lossless=lossless)
        e.update(decoded_rgba_sha256=sha(dec_rgba), alpha_zero_pixels=int((dec_rgba[..., 3] == 0).sum()))
        rgba = None
        if slide is None:
            e.update(png=None, rgba_sha256=None, openslide_failed=openslide is not None,
                     openslide_error=None if openslide is None else info["error"])
        else:
            try:
                rgba = read()
                e.update(rgba_sha256=sha(rgba), openslide_failed=False, openslide_error=None, **compare(rgba, dec_rgba))
            except Exception as ex:
                e.update(png=None, rgba_sha256=None, openslide_failed=True,
                         openslide_error=f"{type(ex).__name__}: {ex}")
        # one PNG when OpenSlide and the decode agree to the byte (png == decoded_png), two otherwise
        if rgba is not None and e["identical"]:
            e["png"] = e["decoded_png"] = f"{rel}/{ename}.png"
        else:
            e["decoded_png"] = f"{rel}/{ename}.decoded.png"
            if rgba is not None:
                e["png"] = f"{rel}/{ename}.openslide.png"
                save_png(os.path.join(out, e["png"]), rgba)
        save_png(os.path.join(out, e["decoded_png"]), dec_rgba)
        entries.append(e)

    level_lossless = {li: CODECS[lv["codec"]]["lossy"] is None for li, lv in enumerate(s["levels"])}
    for rname, level, x, y, w, h in s["regions"]:
        ds_ = s["levels"][level]["ds"]
        assert x % ds_ == 0 and y % ds_ == 0, "regions at level > 0 start on a multiple of the downsample"
        rgb, mask = decoded[("VOLUME", level)]
        dec = crop_rgba(rgb, mask, x // ds_, y // ds_, w, h)
        entry("region", rname, level, x, y, w, h, dec, level_lossless[level],
              lambda: np.asarray(slide.read_region((x, y), level, (w, h))))
    for flavor, codec in s["associated"]:
        aname = OPENSLIDE_NAMES[flavor]
        rgb, mask = decoded[(flavor, 0)]
        dec = crop_rgba(rgb, mask, 0, 0, rgb.shape[1], rgb.shape[0])
        entry("associated", aname, None, None, None, rgb.shape[1], rgb.shape[0], dec, CODECS[codec]["lossy"] is None,
              lambda: np.asarray(slide.associated_images[aname].convert("RGBA")))
    if slide is not None:
        slide.close()
    return series_info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", help="../shared/slides: take the pixels from aperio/CMU-1-Small-Region.svs")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if openslide is None:
        print("openslide-python not installed: OpenSlide references left out", file=sys.stderr)
    source, source_info = source_pixels(args.shared)
    entries, series = [], []
    for number, s in enumerate(SERIES, 1):
        folder, files, truth, ctx = write_series(args.out, s, number, source, source_info)
        series.append(references(args.out, s, folder, files, truth, ctx, entries))
    manifest = dict(
        note="Region x,y are level-0 coordinates, w,h pixels of the level. png: OpenSlide's read_region "
             "(openslide-python's non-premultiplied RGBA); decoded_png: the region assembled by this script "
             "from the frames (pydicom + imagecodecs). rgba_sha256 / decoded_rgba_sha256: sha256 of the RGBA "
             "bytes, row-major. file: the file OpenSlide was given (it finds the rest of the series by "
             "Series Instance UID in the same folder).",
        generator="tools/make_dicom_slides.py", source=source_info, pydicom=pydicom.__version__,
        imagecodecs=imagecodecs.__version__, numpy=np.__version__,
        openslide=getattr(openslide, "__library_version__", None) if openslide else None,
        openslide_python=getattr(openslide, "__version__", None) if openslide else None,
        series=series, entries=entries)
    tmp = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(args.out, "manifest.json"))
    print_summary(args.out, series, entries)


def print_summary(out, series, entries):
    print(f"pydicom {pydicom.__version__}, imagecodecs {imagecodecs.__version__}, "
          f"OpenSlide {getattr(openslide, '__library_version__', None) if openslide else 'not installed'}")
    for s in series:
        o = s["openslide"]
        state = "no openslide" if o is None else ("opened" if o["opened"] else f"FAILED: {o['error']}")
        print(f"\n{s['series']}: {len(s['files'])} files, {s['size_bytes'] / 1024:.0f} KiB, passed {s['file_passed']} "
              f"({s['file_passed_role']}): {state}")
        if o and o["opened"]:
            print(f"  levels {o['level_dimensions']} downsamples {o['level_downsamples']} tiles {o['tile_sizes']}")
            print(f"  associated {o['associated']} mpp {o['mpp_x']} x {o['mpp_y']} objective {o['objective_power']} "
                  f"barcode {o['barcode']} icc {o['icc_profile_bytes']} "
                  f"opens from every file {o['opens_from_every_file']}")
    print(f"\n{'series':<12} {'entry':<22} {'lvl':>3} {'x,y':>11} {'w x h':>9} {'lossless':>8} {'openslide':>9} "
          f"{'mean|d|':>8} {'max|d|':>6}")
    for e in entries:
        xy = "" if e["x"] is None else f"{e['x']},{e['y']}"
        lvl = "" if e["level"] is None else e["level"]
        state = "FAILED" if e["openslide_failed"] else ("-" if e["png"] is None else "ok")
        mean = "" if "mean_abs_diff" not in e else f"{e['mean_abs_diff']:.4f}"
        mx = "" if "max_abs_diff" not in e else e["max_abs_diff"]
        print(f"{e['series']:<12} {e['name']:<22} {lvl!s:>3} {xy:>11} {e['w']}x{e['h']:<5} {e['lossless']!s:>8} "
              f"{state:>9} {mean:>8} {mx!s:>6}")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"\n{len(entries)} references, {total / 1024:.0f} KiB in {out}")


if __name__ == "__main__":
    main()
