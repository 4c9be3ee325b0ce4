#!/usr/bin/env python3
"""Reader throughput, flashslide against OpenSlide, in one run on the same cores.

    python3 bench/read_throughput.py [--flashslide target/release/flashslide] SLIDE...

Both read every level-0 tile of each slide as an RGBA region (OpenSlide: openslide-python's
read_region, whose PIL image is the RGBA result). Reports the median of 5 passes after a
warm-up, in megapixels per second, and flashslide's ratio to OpenSlide's one-thread figure.
Needs openslide-python and openslide-bin (pip).
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import openslide


def tiles_of(slide):
    props = slide.properties
    tw = int(props.get("openslide.level[0].tile-width", 256))
    th = int(props.get("openslide.level[0].tile-height", 256))
    w, h = slide.level_dimensions[0]
    return [(x, y, min(tw, w - x), min(th, h - y)) for y in range(0, h, th) for x in range(0, w, tw)]


def openslide_pass(path, tiles, threads):
    slide = openslide.OpenSlide(path)
    slide.set_cache(openslide.OpenSlideCache(0))
    start = time.perf_counter()
    if threads == 1:
        for x, y, w, h in tiles:
            slide.read_region((x, y), 0, (w, h))
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda t: slide.read_region((t[0], t[1]), 0, (t[2], t[3])), tiles))
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flashslide", default="target/release/flashslide")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("slides", nargs="+")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}, openslide {openslide.__library_version__}, openslide-python {openslide.__version__}")
    print(f"{'slide':<34} {'reader':<12} {'threads':>7} {'MP/s':>8} {'x OpenSlide 1-thread':>21}")
    for path in args.slides:
        slide = openslide.OpenSlide(path)
        tiles = tiles_of(slide)
        mp = sum(w * h for *_, w, h in tiles) / 1e6
        base = None
        for threads in (1, 2):
            openslide_pass(path, tiles, threads)
            secs = statistics.median(openslide_pass(path, tiles, threads) for _ in range(args.passes))
            rate = mp / secs
            base = base or rate
            print(f"{os.path.basename(path):<34} {'openslide':<12} {threads:>7} {rate:>8.1f} {rate / base:>21.2f}")
        out = subprocess.run([args.flashslide, "bench", "read", path, "--threads", "1", "2", "--passes",
                              str(args.passes), "--json"], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            rate = r["megapixels_per_second"]
            print(f"{os.path.basename(path):<34} {'flashslide':<12} {r['threads']:>7} {rate:>8.1f} {rate / base:>21.2f}")


if __name__ == "__main__":
    main()
