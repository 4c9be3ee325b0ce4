#!/usr/bin/env python3
"""Makes small test slides of the scanner formats of tools/vendor_slides/ from real pixels,
with references.

    python3 tools/make_vendor_slides.py --out DIR [--shared ../shared/slides] [--only NAME...]

Pixels: level 0 of ../shared/slides/aperio/CMU-1-Small-Region.svs, or without --shared a
seeded synthetic H&E-like image (tools/slide_refs.py). Each module of tools/vendor_slides/
(MIRAX, Philips TIFF, Leica SCN, Ventana BIF, OME-TIFF) writes its slides into DIR/<module>/
and describes each: the file a reader is given, the module's own decode of every level (the
truth: tiles placed as the format says, in the order the reference reader paints them),
regions to compare, associated images, and the reference reader (OpenSlide 4.0.1, or
tifffile for OME-TIFF, which OpenSlide does not read). A slide a reader must refuse names the
reason instead.

Writes DIR/manifest.json:
  slides   one per slide: name, format, path (relative to DIR), notes, reference ("openslide"
           or "tifffile"), refuse (the reason's words, for a slide that must be refused; the
           reference reader's error is recorded), level_dimensions, level_downsamples,
           associated (names), properties (references/<name>/properties.json: every OpenSlide
           property; for tifffile the MPP and levels it reports), mpp_x, mpp_y,
           objective_power, the truth's agreement with the reference.
  entries  one per region or associated image: slide, kind, name, level, x, y, w, h, png
           (the reference reader's pixels, RGBA), decoded_png (the module's decode), their
           sha256 over the RGBA bytes, lossless, mean/max absolute difference.
Region x, y are level-0 coordinates and w, h pixels of the level, as in OpenSlide's
read_region; every generated level is 2^k smaller and regions at level k start on a multiple
of 2^k, so no reader resamples.

Exit code 3 when a needed Python package is missing (tests then report a skip).
"""

import argparse
import importlib
import json
import os
import shutil
import sys

try:
    import numpy as np
    import tifffile  # noqa: F401  (the modules and the OME-TIFF reference need it)
    import imagecodecs  # noqa: F401
    from PIL import Image  # noqa: F401
    import openslide
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"missing Python package: {e.name} (pip install tifffile imagecodecs numpy pillow "
          "openslide-python openslide-bin)", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from slide_refs import compare, crop_rgba, save_png, sha, source_pixels  # noqa: E402

MODULES = ["philips", "scn", "bif", "ometiff", "mirax"]


def openslide_reference(path):
    """What OpenSlide makes of a slide: (slide facts, region reader, associated reader) or
    (facts with the error, None, None)."""
    try:
        slide = openslide.OpenSlide(path)
    except Exception as e:  # OpenSlideError, OpenSlideUnsupportedFormatError
        return dict(opened=False, error=f"{type(e).__name__}: {e}"), None, None
    props = dict(slide.properties)
    facts = dict(opened=True, vendor=props.get("openslide.vendor"),
                 level_dimensions=[list(d) for d in slide.level_dimensions],
                 level_downsamples=list(slide.level_downsamples),
                 associated=sorted(slide.associated_images.keys()),
                 mpp_x=props.get("openslide.mpp-x"), mpp_y=props.get("openslide.mpp-y"),
                 objective_power=props.get("openslide.objective-power"), properties=props)

    def region(level, x, y, w, h):
        return np.asarray(slide.read_region((x, y), level, (w, h)))

    def associated(name):
        return np.asarray(slide.associated_images[name].convert("RGBA"))
    return facts, region, associated


OME_UNIT_UM = {"Ym": 1e30, "Zm": 1e27, "Em": 1e24, "Pm": 1e21, "Tm": 1e18, "Gm": 1e15,
               "Mm": 1e12, "km": 1e9, "hm": 1e8, "dam": 1e7, "m": 1e6, "dm": 1e5, "cm": 1e4,
               "mm": 1e3, "µm": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "pm": 1e-6, "fm": 1e-9,
               "am": 1e-12, "zm": 1e-15, "ym": 1e-18, "Å": 1e-4, "thou": 25.4,
               "li": 25400 / 12, "in": 25400.0, "ft": 304800.0, "yd": 914400.0}


def ome_facts(omexml):
    """PhysicalSizeX/Y in micrometres (unit attribute, default µm) and the objective's
    NominalMagnification of the first OME <Image> that holds TiffData (tifffile's series[0])."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(omexml)
    q = lambda tag: f"{{{root.tag[1:].split('}')[0]}}}{tag}" if root.tag.startswith("{") else tag
    out = dict(mpp_x=None, mpp_y=None, objective_power=None)
    for image in root.iter(q("Image")):
        pixels = image.find(q("Pixels"))
        if pixels is None or pixels.find(q("TiffData")) is None:
            continue
        for axis in "XY":
            v = pixels.get(f"PhysicalSize{axis}")
            unit = pixels.get(f"PhysicalSize{axis}Unit", "µm")
            if v is not None and unit in OME_UNIT_UM and float(v) > 0:
                out[f"mpp_{axis.lower()}"] = repr(float(v) * OME_UNIT_UM[unit])
        settings = image.find(q("ObjectiveSettings"))
        if settings is not None:
            for obj in root.iter(q("Objective")):
                if obj.get("ID") == settings.get("ID") and obj.get("NominalMagnification"):
                    out["objective_power"] = repr(float(obj.get("NominalMagnification")))
        break
    return out


def tifffile_reference(path):
    """What tifffile makes of an OME-TIFF: its first series' levels (level 0 and, where page 0
    has them, its SubIFDs; tifffile reads no other pyramid), refused unless that series is one
    interleaved RGB uint8 plane (squeezed axes YXS, S = 3, photometric RGB or YCbCr)."""
    try:
        tif = tifffile.TiffFile(path)
        if not tif.is_ome:
            raise ValueError("not OME-TIFF: the first ImageDescription is not OME-XML")
        series = tif.series[0]
        key = series.keyframe
        if (series.axes != "YXS" or series.shape[-1] != 3 or series.dtype != np.uint8
                or key.photometric not in (2, 6) or key.planarconfig != 1):
            raise ValueError(f"not brightfield RGB: axes {series.axes}, shape {series.shape}, "
                             f"{series.dtype}, photometric {int(key.photometric)}")
        levels = [lv.asarray() for lv in series.levels]
        # The file's other images named as associated images are (flashslide's rule).
        extra = {}
        for other in tif.series[1:]:
            low = (other.name or "").lower()
            kind = next((k for k in ("label", "macro", "thumbnail") if k in low), None)
            if kind and kind not in extra and other.axes == "YXS" and other.dtype == np.uint8:
                extra[kind] = other.asarray()
    except Exception as e:
        return dict(opened=False, error=f"{type(e).__name__}: {e}"), None, None
    ome = tif.ome_metadata or ""
    physical = ome_facts(ome)
    facts = dict(opened=True, vendor=None,
                 level_dimensions=[[lv.shape[1], lv.shape[0]] for lv in levels],
                 level_downsamples=[levels[0].shape[1] / lv.shape[1] for lv in levels],
                 associated=sorted(extra), **physical,
                 properties=dict(axes=series.axes, shape=list(series.shape), dtype=str(series.dtype),
                                 series=[s.name for s in tif.series], ome_xml_bytes=len(ome.encode()),
                                 photometric=int(key.photometric), compression=int(key.compression),
                                 **physical))

    def region(level, x, y, w, h):
        img = levels[level]
        ds = round(facts["level_downsamples"][level])
        return crop_rgba(img, np.ones(img.shape[:2], bool), x // ds, y // ds, w, h)

    def associated(name):
        img = extra[name]
        return crop_rgba(img, np.ones(img.shape[:2], bool), 0, 0, img.shape[1], img.shape[0])
    return facts, region, associated


def references(out, slide, entries):
    name = slide["name"]
    rel = f"references/{name}"
    refdir = os.path.join(out, rel)
    if os.path.isdir(refdir):
        shutil.rmtree(refdir)
    os.makedirs(refdir)
    path = os.path.join(out, slide["path"])
    reader = openslide_reference if slide["reference"] == "openslide" else tifffile_reference
    facts, region, associated = reader(path)
    info = dict(name=name, format=slide["format"], path=slide["path"], notes=slide["notes"],
                reference=slide["reference"], refuse=slide.get("refuse"), openslide_version=openslide.__library_version__)
    props = facts.pop("properties", None)
    if props is not None:
        with open(os.path.join(refdir, "properties.json"), "w") as f:
            json.dump(props, f, indent=1, sort_keys=True)
        info["properties"] = f"{rel}/properties.json"
    info.update(facts)
    if slide.get("refuse"):
        return info
    truth_dims = [[lv["rgb"].shape[1], lv["rgb"].shape[0]] for lv in slide["levels"]]
    info["truth_level_dimensions"] = truth_dims

    def entry(kind, ename, level, x, y, w, h, dec, lossless, read):
        e = dict(slide=name, kind=kind, name=ename, level=level, x=x, y=y, w=w, h=h, lossless=lossless,
                 decoded_rgba_sha256=sha(dec), alpha_zero_pixels=int((dec[..., 3] == 0).sum()))
        got = None
        if read is not None:
            try:
                got = read()
                e.update(rgba_sha256=sha(got), reference_error=None, **compare(got, dec))
            except Exception as ex:
                e.update(rgba_sha256=None, reference_error=f"{type(ex).__name__}: {ex}")
        if got is not None and e["identical"]:
            e["png"] = e["decoded_png"] = f"{rel}/{ename}.png"
        else:
            e["png"] = None if got is None else f"{rel}/{ename}.reference.png"
            e["decoded_png"] = f"{rel}/{ename}.decoded.png"
            if got is not None:
                save_png(os.path.join(out, e["png"]), got)
        save_png(os.path.join(out, e["decoded_png"]), dec)
        entries.append(e)

    downsamples = [slide["levels"][0]["rgb"].shape[1] // d[0] for d in truth_dims]
    for rname, level, x, y, w, h in slide["regions"]:
        ds = downsamples[level]
        assert x % ds == 0 and y % ds == 0, f"{name} {rname}: a region at level {level} starts on a multiple of {ds}"
        lv = slide["levels"][level]
        dec = crop_rgba(lv["rgb"], lv["mask"], x // ds, y // ds, w, h)
        read = None if region is None else (lambda level=level, x=x, y=y, w=w, h=h: region(level, x, y, w, h))
        entry("region", rname, level, x, y, w, h, dec, lv["lossless"], read)
    for aname, (rgb, lossless) in sorted(slide.get("associated", {}).items()):
        dec = crop_rgba(rgb, np.ones(rgb.shape[:2], bool), 0, 0, rgb.shape[1], rgb.shape[0])
        read = None if associated is None else (lambda aname=aname: associated(aname))
        entry("associated", aname, None, None, None, rgb.shape[1], rgb.shape[0], dec, lossless, read)
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shared", help="../shared/slides: take the pixels from aperio/CMU-1-Small-Region.svs")
    ap.add_argument("--only", nargs="*", default=MODULES, help="modules to run (default: all)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    source, source_info = source_pixels(args.shared)
    slides, entries = [], []
    for module in args.only:
        make = importlib.import_module(f"vendor_slides.{module}").make
        folder = os.path.join(args.out, module)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        for slide in make(folder, source):
            slide["path"] = os.path.relpath(os.path.join(folder, slide["path"]), args.out)
            slides.append(references(args.out, slide, entries))
    manifest = dict(note=__doc__.split("Writes DIR/manifest.json:")[1].strip(),
                    generator="tools/make_vendor_slides.py", source=source_info,
                    openslide=openslide.__library_version__, tifffile=tifffile.__version__,
                    slides=slides, entries=entries)
    tmp = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(args.out, "manifest.json"))
    for s in slides:
        es = [e for e in entries if e["slide"] == s["name"]]
        worst = max((e.get("max_abs_diff", -1) for e in es), default=-1)
        print(f"{s['name']:<28} {s['format']:<10} {'opened' if s.get('opened') else 'refused':<8} "
              f"levels {s.get('level_dimensions')} entries {len(es)} worst diff {worst}")


if __name__ == "__main__":
    main()
