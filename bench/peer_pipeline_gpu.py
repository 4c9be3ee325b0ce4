#!/usr/bin/env python3
"""The strong peer of `flashslide run`: the pipeline a competent PyTorch user would write to
decode on the GPU, timed from the first slide opened to the last slide's features written.

Level 0's JPEG tiles are read straight from the TIFF (bench/jpeg_tiles.py; only the stored
tiles under tissue tiles, read by a thread ahead of the decoder), decoded in batches by nvJPEG
(`torchvision.io.decode_jpeg(list, device="cuda")`) and pasted into a u8 canvas on the GPU
(the needed tiles' bounding box; glass, 255, elsewhere). Each tissue tile, at the level-0
corners of a `flashslide embed` safetensors file (--coords), is cut from it, box-averaged to
the model's input size as flashslide averages (`area` where the factor is not whole) and fed
as u8 [B, S, S, 3] to bench/encoder_reference.py's `Fed` ViT built from --config (random
weights, bf16, torch.compile). A producer thread decodes slide k+1 on its own CUDA stream
while the main thread encodes slide k; two canvases go in turn, handed over with CUDA events.
Before the clock: model compiled and run twice on a full batch, nvJPEG started. Features go
to --out DIR (default a temporary one), one .npy a slide, before the clock stops.

All SLIDEs must be copies of one slide: the one coordinates file (`flashslide embed` on that
slide) serves them all, so this peer encodes exactly the tiles flashslide encodes.

    python3 bench/peer_pipeline_gpu.py SLIDE... --config bench/configs/vit-l16.json \\
        --coords EMBED.safetensors [--batch 256] [--compile-mode default|max-autotune|none]
        [--reference-rate R] [--json OUT.json] [--out DIR] [--device cuda|cpu]

Prints one JSON object: per slide wall seconds, tiles, stored tiles decoded and the decode
and encode spans (CUDA events, overlapping); total seconds; tiles/s over all slides and over
slides 2..N; then, after the timed run, one slide decoded alone and encoded alone, and the
compiled encoder alone on u8 tiles already on the GPU (tiles/s; with --reference-rate R, e.g.
encoder_reference.py's torch.compile figure, its ratio to R)."""
import argparse, json, os, queue, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_reference import Fed, build  # noqa: E402
from jpeg_tiles import level0_jpeg_tiles, tile_stream  # noqa: E402


def flashslide_coords(path):
    """A `flashslide embed` safetensors file's coords (int64 [N, 2], level-0 x, y of each tile's
    top-left corner), tile side in level-0 pixels (`tile_size_level0`) and metadata."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        c = header["coords"]
        assert c["dtype"] == "I64", c
        f.seek(8 + n + c["data_offsets"][0])
        raw = f.read(c["data_offsets"][1] - c["data_offsets"][0])
    meta = header.get("__metadata__", {})
    return np.frombuffer(raw, "<i8").reshape(c["shape"]).copy(), float(meta["tile_size_level0"]), meta


def stored_tiles(table, coords, side):
    """Row-major indices of the stored tiles the tissue tiles overlap (present in the file),
    their (row, col) in a canvas whose origin is (top row, left col), and its shape."""
    tw, th = table["tile_w"], table["tile_h"]
    c0, r0 = coords[:, 0] // tw, coords[:, 1] // th
    c1, r1 = (coords[:, 0] + side - 1) // tw, (coords[:, 1] + side - 1) // th
    need = np.zeros((table["rows"], table["cols"]), bool)
    for dr in range(int((r1 - r0).max()) + 1):
        for dc in range(int((c1 - c0).max()) + 1):
            r, c = np.minimum(r0 + dr, r1), np.minimum(c0 + dc, c1)
            ok = (r < table["rows"]) & (c < table["cols"])
            need[r[ok], c[ok]] = True
    rows, cols = np.nonzero(need)
    ids = rows * table["cols"] + cols
    present = np.asarray(table["counts"])[ids] > 0
    origin = (int(r0.min()), int(c0.min()))
    shape = ((int(r1.max()) - origin[0] + 1) * th, (int(c1.max()) - origin[1] + 1) * tw, 3)
    return ids[present], rows[present] - origin[0], cols[present] - origin[1], origin, shape


def cut(canvas, ys, xs, side, size, ar):
    """Tiles side² at (xs, ys) of the canvas, averaged to size², u8 [B, size, size, 3]."""
    t = canvas[(ys[:, None] + ar)[:, :, None], (xs[:, None] + ar)[:, None, :]]
    k = side // size
    if k * size == side:  # box average, rounded as flashslide rounds
        s = t.view(-1, size, k, size, k, 3).sum((2, 4), dtype=torch.int32)
        return ((s + k * k // 2) // (k * k)).to(torch.uint8)
    x = F.interpolate(t.permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("slides", nargs="+")
    for required in ("--config", "--coords"):
        p.add_argument(required, required=True)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--chunk", type=int, default=512, help="JPEG streams per decode_jpeg call")
    p.add_argument("--compile-mode", default="default", choices=["default", "max-autotune", "none"])
    p.add_argument("--reference-rate", type=float)
    p.add_argument("--device", default="cuda", help="cpu: to check the logic, with --compile-mode none")
    for optional in ("--json", "--out"):
        p.add_argument(optional)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    config = json.load(open(args.config))
    coords, tile_level0, _ = flashslide_coords(args.coords)
    assert len(coords), f"{args.coords}: no tissue tiles"
    side, size, B, dev = int(round(tile_level0)), config["image_size"], args.batch, torch.device(args.device)
    cuda = dev.type == "cuda"
    out_dir = args.out or tempfile.mkdtemp(prefix="peer_gpu_")
    os.makedirs(out_dir, exist_ok=True)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def record(stream):  # a timing event on stream; None on the CPU, where all runs in order
        if cuda:
            (e := torch.cuda.Event(enable_timing=True)).record(stream)
            return e

    def wait(stream, event):
        if event is not None:
            stream.wait_event(event)

    # Before the clock: model compiled and warm, nvJPEG started.
    fed = Fed(build(config).to(torch.bfloat16), config).to(dev).eval()
    fn = fed if args.compile_mode == "none" else torch.compile(
        fed, mode=None if args.compile_mode == "default" else args.compile_mode, dynamic=False)
    ar = torch.arange(side, device=dev)
    with torch.inference_mode():
        warm = torch.randint(0, 256, (B, size, size, 3), dtype=torch.uint8, device=dev)
        for _ in range(2):
            dim = fn(warm).shape[1]
        cut(torch.full((side, side, 3), 255, dtype=torch.uint8, device=dev), ar[:1] * 0, ar[:1] * 0, side, size, ar)
        jpeg = encode_jpeg(torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8))
        decode_jpeg([jpeg, jpeg], mode=ImageReadMode.RGB, device=dev)
    sync()
    producer_stream = torch.cuda.Stream(dev) if cuda else None
    main_stream = torch.cuda.current_stream(dev) if cuda else None
    free, ready, reader = queue.Queue(), queue.Queue(maxsize=2), ThreadPoolExecutor(1)
    for _ in range(2):
        free.put((None, None))  # (canvas, the event after which the consumer is done with it)

    def decode_slide(path):
        table = level0_jpeg_tiles(path)
        ids, rows, cols, origin, shape = stored_tiles(table, coords, side)
        tw, th = table["tile_w"], table["tile_h"]
        transform = 1 if table["photometric"] == 6 else 0
        rr, cc = torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)
        canvas, released = free.get()
        wait(producer_stream, released)
        if canvas is None or tuple(canvas.shape) != shape:
            canvas = None
            canvas = torch.empty(shape, dtype=torch.uint8, device=dev)
        start = record(producer_stream)
        canvas.fill_(255)
        grid = canvas.view(shape[0] // th, th, shape[1] // tw, tw, 3)
        starts = range(0, len(ids), args.chunk)
        with open(path, "rb") as f:  # a reader thread reads chunk j+1 while chunk j decodes
            read = lambda s: [torch.frombuffer(bytearray(tile_stream(f, table, int(i), transform)), dtype=torch.uint8)
                              for i in ids[s:s + args.chunk]]
            pending = reader.submit(read, 0)
            for j, s in enumerate(starts):
                data = pending.result()
                if j + 1 < len(starts):
                    pending = reader.submit(read, starts[j + 1])
                images = decode_jpeg(data, mode=ImageReadMode.RGB, device=dev)
                grid[rr[s:s + args.chunk], :, cc[s:s + args.chunk]] = torch.stack(images).permute(0, 2, 3, 1)
        # Glass beyond the image's edges (stored edge tiles are padded).
        canvas[max(table["height"] - origin[0] * th, 0):].fill_(255)
        canvas[:, max(table["width"] - origin[1] * tw, 0):].fill_(255)
        return dict(path=path, canvas=canvas, origin=(origin[0] * th, origin[1] * tw), stored=len(ids),
                    start=start, ready=record(producer_stream))

    def encode_slide(item):
        ys = torch.as_tensor(coords[:, 1] - item["origin"][0], device=dev)
        xs = torch.as_tensor(coords[:, 0] - item["origin"][1], device=dev)
        wait(main_stream, item["ready"])
        item["enc_start"] = record(main_stream)
        n = len(coords)
        feats = torch.empty(n, dim, device=dev)
        for s in range(0, n, B):
            idx = torch.arange(s, s + B, device=dev).clamp_(max=n - 1)  # last batch padded: one shape
            feats[s:s + B].copy_(fn(cut(item["canvas"], ys[idx], xs[idx], side, size, ar))[: min(B, n - s)])
        item["enc_end"] = record(main_stream)
        host = feats.cpu().numpy()
        free.put((item.pop("canvas"), record(main_stream)))
        return host

    def producer():
        with torch.inference_mode(), torch.cuda.stream(producer_stream):
            try:
                for path in args.slides:
                    ready.put(decode_slide(path))
            except BaseException as e:  # handed to the main thread
                ready.put(e)

    # The clock: first slide opened to last slide's features written.
    start = time.perf_counter()
    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    done, items = [], []
    with torch.inference_mode():
        for k in range(len(args.slides)):
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
            np.save(os.path.join(out_dir, f"{k:03d}_{os.path.basename(item['path'])}.npy"), encode_slide(item))
            done.append(time.perf_counter())
            items.append(item)
    total = done[-1] - start
    thread.join()

    # After the clock: one slide decoded alone and encoded alone, then the encoder alone.
    with torch.inference_mode():
        sync(); t0 = time.perf_counter()
        with torch.cuda.stream(producer_stream):
            item = decode_slide(args.slides[0])
        sync(); t1 = time.perf_counter()
        encode_slide(item)
        sync(); t2 = time.perf_counter()
        batches = 10
        for _ in range(batches):
            fn(warm).float().cpu()
        encoder_rate = B * batches / (time.perf_counter() - t2)
    n = len(coords)
    ms = (lambda a, b: a.elapsed_time(b) / 1e3) if cuda else (lambda a, b: None)
    result = {
        "pipeline": "GPU peer: TIFF JPEG tiles → nvJPEG (torchvision decode_jpeg) → canvas → box average → timm ViT bf16, torch.compile",
        "config": config["name"], "slides": len(args.slides), "tile_level0": tile_level0, "image_size": size,
        "batch": B, "compile_mode": args.compile_mode, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(dev) if cuda else "cpu", "out": out_dir,
        "per_slide": [{"slide": it["path"], "tiles": n, "stored_tiles_decoded": it["stored"],
                       "wall_s": d - (done[k - 1] if k else start),
                       "decode_span_s": ms(it["start"], it["ready"]), "encode_span_s": ms(it["enc_start"], it["enc_end"])}
                      for k, (it, d) in enumerate(zip(items, done))],
        "total_s": total,
        "tiles_per_s": n * len(done) / total,
        "tiles_per_s_slides_2_to_n": n * (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 else None,
        "alone": {"decode_s": t1 - t0, "encode_s": t2 - t1, "encoder_tiles_per_s": encoder_rate},
    }
    if args.reference_rate:
        result["alone"]["reference_tiles_per_s"] = args.reference_rate
        result["alone"]["encoder_vs_reference"] = encoder_rate / args.reference_rate
    print(text := json.dumps(result, indent=1))
    if args.json:
        open(args.json, "w").write(text)


if __name__ == "__main__":
    main()
