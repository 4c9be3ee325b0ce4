#!/usr/bin/env python3
"""Codestreams for tools/j2k_candidates: 512² and 256² crops of CMU-1-Small-Region (through
OpenSlide), each encoded lossless (5/3 + RCT) and lossy at two settings by imagecodecs
(OpenJPEG); beside each, OpenJPEG's decode (.rgb) and the source pixels (.src); then
OpenJPEG's own single-thread rate on them, for the comparison.

    python3 tools/j2k_candidates/make_data.py OUT_DIR [--shared ../shared/slides]
"""
import argparse, json, os, time

import imagecodecs
import numpy as np
import openslide

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared/slides"))
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
slide = openslide.OpenSlide(os.path.join(args.shared, "aperio/CMU-1-Small-Region.svs"))
pixels = np.asarray(slide.read_region((0, 0), 0, (2048, 2048)).convert("RGB"))
cases = []
for k, (y, x) in enumerate([(0, 0), (512, 768), (1024, 1024), (1536, 256)]):
    crop = pixels[y:y + 512, x:x + 512]
    for name, kw in [("lossless", dict(reversible=True)), ("lossy10", dict(level=10)), ("lossy30", dict(level=30))]:
        for size in (256, 512):
            tile = np.ascontiguousarray(crop[:size, :size])
            stream = imagecodecs.jpeg2k_encode(tile, codecformat="J2K", **kw)
            stem = os.path.join(args.out, f"t{k}_{name}_{size}")
            open(stem + ".j2c", "wb").write(stream)
            open(stem + ".rgb", "wb").write(imagecodecs.jpeg2k_decode(stream).tobytes())
            open(stem + ".src", "wb").write(tile.tobytes())
            cases.append(dict(file=f"t{k}_{name}_{size}", size=size, bytes=len(stream)))
json.dump(cases, open(os.path.join(args.out, "cases.json"), "w"), indent=0)
total, px = 0.0, 0
for c in cases:
    data = open(os.path.join(args.out, c["file"] + ".j2c"), "rb").read()
    t = time.perf_counter()
    for _ in range(10):
        imagecodecs.jpeg2k_decode(data, numthreads=1)
    total += (time.perf_counter() - t) / 10
    px += c["size"] ** 2
print(f"OpenJPEG {imagecodecs.jpeg2k_version()} (imagecodecs, one thread): {px / total / 1e6:.1f} Mpx/s")
