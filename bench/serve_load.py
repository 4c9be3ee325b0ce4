#!/usr/bin/env python3
"""Load test of DeepZoom tile servers: every tile of a slide's pyramid requested once, in a
seeded random order, by N concurrent clients on loopback, from a cold cache.

    python3 bench/serve_load.py --slide S.svs --out RUN_OUT --flashslide BIN [--clients 8]

Runs, one after the other, on the same machine:
  flashslide   `flashslide serve RUN_OUT` (RUN_OUT: a `flashslide run` of S), tiles at
               /view/NAME/slide_files/L/C_R.jpeg, in the geometry its slide.dzi states
  openslide    openslide-python's DeepZoomGenerator (JPEG quality 85, as flashslide) behind
               http.server's ThreadingHTTPServer with at most 2 tiles rendered at once (a
               threaded server with 2 workers): in flashslide's geometry (the same tiles),
               then in its own default (254-px tiles, overlap 1)
Prints tiles/s and the p50/p99 latency of each, as JSON lines. Needs openslide-python.
"""

import argparse
import http.server
import io
import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openslide
from openslide.deepzoom import DeepZoomGenerator


def tile_list(gen):
    tiles = []
    for level in range(gen.level_count):
        cols, rows = gen.level_tiles[level]
        tiles += [(level, c, r) for r in range(rows) for c in range(cols)]
    return tiles


def load(base, tiles, clients, seed):
    order = tiles[:]
    random.Random(seed).shuffle(order)
    latencies = [None] * len(order)

    def fetch(i):
        level, c, r = order[i]
        t = time.perf_counter()
        with urllib.request.urlopen(f"{base}/{level}/{c}_{r}.jpeg", timeout=60) as reply:
            body = reply.read()
            assert reply.status == 200 and body[:2] == b"\xff\xd8", (order[i], reply.status)
        latencies[i] = time.perf_counter() - t

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fetch, range(len(order))))
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return dict(tiles=len(order), seconds=round(wall, 3), tiles_per_s=round(len(order) / wall, 1),
                p50_ms=round(1000 * lat[len(lat) // 2], 2), p99_ms=round(1000 * lat[int(len(lat) * 0.99)], 2))


def openslide_server(slide_path, tile_size, overlap):
    gen = DeepZoomGenerator(openslide.OpenSlide(slide_path), tile_size=tile_size, overlap=overlap)
    workers = threading.Semaphore(2)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            level, tile = self.path.strip("/").split("/")[-2:]
            c, r = tile.removesuffix(".jpeg").split("_")
            with workers:
                img = gen.get_tile(int(level), (int(c), int(r)))
                buf = io.BytesIO()
                img.save(buf, "jpeg", quality=85)
            body = buf.getvalue()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, gen


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slide", required=True)
    ap.add_argument("--out", required=True, help="a flashslide run's output folder holding the slide")
    ap.add_argument("--flashslide", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    name = os.path.basename(args.slide)
    proc = subprocess.Popen([args.flashslide, "serve", args.out, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip().rsplit(" ", 1)[-1].rstrip("/")
        with urllib.request.urlopen(f"{address}/view/{name}/slide.dzi") as reply:
            dzi = reply.read().decode()
        tile_size = int(re.search(r'TileSize="(\d+)"', dzi).group(1))
        overlap = int(re.search(r'Overlap="(\d+)"', dzi).group(1))
        tiles = tile_list(DeepZoomGenerator(openslide.OpenSlide(args.slide), tile_size=tile_size, overlap=overlap))
        result = load(f"{address}/view/{name}/slide_files", tiles, args.clients, args.seed)
        print(json.dumps(dict(server="flashslide serve", tile_size=tile_size, overlap=overlap, clients=args.clients,
                              **result)), flush=True)
    finally:
        proc.kill()
    for size, lap in [(tile_size, overlap), (254, 1)]:
        server, gen = openslide_server(args.slide, size, lap)
        port = server.server_address[1]
        result = load(f"http://127.0.0.1:{port}/slide_files", tile_list(gen), args.clients, args.seed)
        print(json.dumps(dict(server="openslide-python DeepZoomGenerator, 2 workers", tile_size=size, overlap=lap,
                              clients=args.clients, openslide=openslide.__library_version__, **result)), flush=True)
        server.shutdown()


if __name__ == "__main__":
    main()
