#!/usr/bin/env python3
"""The pipeline users assemble today, CLAM/Trident style, timed from open to features.

OpenSlide opens the slide; tissue is segmented on a low-resolution level (saturation,
median blur, Otsu, as CLAM's default); the tissue tiles of `--tile-um` microns are read at
level 0 with `read_region` in PyTorch DataLoader workers (one per core), resized to 224 px
and normalised there, and a timm ViT-S/16 embeds them in bf16 on the GPU. Weights are
random (nothing can be downloaded; speed does not depend on them). CUDA start-up and the
model's first forward happen before the clock starts, as flashslide's summary.json also
leaves out process start-up.

With --config CONFIG.json the model is bench/encoder_reference.py's `build` of that flashslide
config instead (bf16; input size and normalisation from the config); with --coords
EMBED.safetensors (from `flashslide embed` on the same slide) the tiles are flashslide's tissue
tiles, of its size in level-0 pixels, instead of this script's own segmentation: so this peer,
bench/peer_pipeline_gpu.py and flashslide encode the same tiles with the same model. Several
SLIDEs (copies of one slide when --coords is given) run one after the other; the clock runs
from the first slide opened to the last slide's features held.

    python3 bench/peer_pipeline.py SLIDE... [--config CONFIG.json] [--coords EMBED.safetensors]
        [--workers N] [--batch B] [--json OUT.json]

Prints one JSON object: tiles, seconds (segmentation, embedding, total from open to
features), tiles per second (of embedding; also of the whole run and of slides 2..N), and
the same per slide.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import openslide
import timm
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def otsu(values):
    """Otsu's threshold of 8-bit values."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    cum = np.cumsum(hist)
    cum_mean = np.cumsum(hist * np.arange(256))
    w0 = cum / total
    w1 = 1.0 - w0
    mu0 = cum_mean / np.maximum(cum, 1)
    mu1 = (cum_mean[-1] - cum_mean) / np.maximum(total - cum, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return int(np.argmax(between))


def tissue_mask(slide):
    """CLAM's default segmentation: saturation at the level nearest 64x, median blur 7, Otsu."""
    level = slide.get_best_level_for_downsample(64)
    w, h = slide.level_dimensions[level]
    rgb = slide.read_region((0, 0), level, (w, h)).convert("RGB")
    saturation = np.asarray(rgb.convert("HSV"))[:, :, 1]
    try:
        import cv2

        saturation = cv2.medianBlur(saturation, 7)
    except ImportError:
        from PIL import ImageFilter

        saturation = np.asarray(Image.fromarray(saturation).filter(ImageFilter.MedianFilter(7)))
    return saturation > otsu(saturation), slide.level_downsamples[level]


def tissue_tiles(slide, tile_level0, min_tissue):
    mask, downsample = tissue_mask(slide)
    width, height = slide.dimensions
    step = tile_level0 / downsample
    coords = []
    for row in range(int(np.ceil(height / tile_level0))):
        for col in range(int(np.ceil(width / tile_level0))):
            y0, x0 = int(row * step), int(col * step)
            y1, x1 = int((row + 1) * step), int((col + 1) * step)
            block = mask[y0:y1, x0:x1]
            if block.size and block.mean() >= min_tissue:
                coords.append((int(col * tile_level0), int(row * tile_level0)))
    return coords


class Tiles(Dataset):
    """read_region at level 0, then resize and normalise, in the worker (as CLAM and Trident)."""

    def __init__(self, path, coords, size, input_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        self.path, self.coords, self.size = path, coords, size
        self.slide = None
        self.transform = transforms.Compose(
            [
                transforms.Resize(input_size),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )

    def __len__(self):
        return len(self.coords)

    def __getitem__(self, i):
        if self.slide is None:  # one handle per worker
            self.slide = openslide.OpenSlide(self.path)
        tile = self.slide.read_region(self.coords[i], 0, (self.size, self.size)).convert("RGB")
        return self.transform(tile)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("slides", nargs="+")
    p.add_argument("--config", help="a flashslide model config: build its ViT (bf16) instead of ViT-S/16")
    p.add_argument("--coords", help="a `flashslide embed` safetensors file: its tiles instead of segmenting")
    p.add_argument("--tile-um", type=float, default=128.0, help="tile side in microns (256 px at 0.5 µm)")
    p.add_argument("--min-tissue", type=float, default=0.25)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--json")
    args = p.parse_args()

    device = torch.device("cuda")
    if args.config:
        from encoder_reference import build

        config = json.load(open(args.config))
        model = build(config)
        size, norm = config["image_size"], dict(mean=config["mean"], std=config["std"])
        both = config["global_pool"] == "token_and_avg"
    else:
        model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
        size, norm, both = 224, {}, False
    model = model.to(device, torch.bfloat16).eval()

    def embed(x):  # the pooled feature, as encoder_reference's Fed pools
        if both:
            tokens = model.forward_features(x)
            return torch.cat([tokens[:, 0], tokens[:, model.num_prefix_tokens:].mean(1)], dim=-1)
        return model(x)

    if args.coords:
        from peer_pipeline_gpu import flashslide_coords

        fs_coords, fs_tile_level0, fs_meta = flashslide_coords(args.coords)
    with torch.inference_mode():
        embed(torch.randn(8, 3, size, size, device=device, dtype=torch.bfloat16))
    torch.cuda.synchronize()

    start = time.perf_counter()
    per_slide, done = [], []
    for path in args.slides:
        opened = time.perf_counter()
        slide = openslide.OpenSlide(path)
        if args.coords:
            mpp = float(fs_meta.get("mpp", "nan"))
            tile_level0 = int(round(fs_tile_level0))
            coords = [(int(x), int(y)) for x, y in fs_coords]
        else:
            mpp = float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
            tile_level0 = int(round(args.tile_um / mpp))
            coords = tissue_tiles(slide, tile_level0, args.min_tissue)
        segmented = time.perf_counter()

        loader = DataLoader(
            Tiles(path, coords, tile_level0, size, **norm),
            batch_size=args.batch,
            num_workers=args.workers,
            pin_memory=True,
        )
        features = []
        with torch.inference_mode():
            for batch in loader:
                batch = batch.to(device, non_blocking=True).to(torch.bfloat16)
                features.append(embed(batch).float().cpu())
        features = torch.cat(features) if features else torch.empty(0, model.num_features)
        done.append(time.perf_counter())
        per_slide.append(
            {
                "slide": path,
                "tiles": len(coords),
                "features": list(features.shape),
                "seconds": {"segmentation": segmented - opened, "embedding": done[-1] - segmented, "total": done[-1] - opened},
            }
        )

    tiles = sum(s["tiles"] for s in per_slide)
    embedding = sum(s["seconds"]["embedding"] for s in per_slide)
    model_name = config["name"] if args.config else "timm ViT-S/16"
    result = {
        "pipeline": f"CLAM/Trident-style: OpenSlide read_region in DataLoader workers, resize {size}, {model_name} bf16"
        + (", flashslide's tiles" if args.coords else ""),
        "slide": args.slides[0] if len(args.slides) == 1 else args.slides,
        "dimensions": list(slide.dimensions),
        "mpp": mpp,
        "tile_level0": tile_level0,
        "tiles": tiles,
        "features": [tiles, features.shape[1]],
        "workers": args.workers,
        "batch": args.batch,
        "gpu": torch.cuda.get_device_name(),
        "seconds": {
            "segmentation": sum(s["seconds"]["segmentation"] for s in per_slide),
            "embedding": embedding,
            "total": done[-1] - start,
        },
        "tiles_per_second": tiles / max(embedding, 1e-9),
        "tiles_per_second_total": tiles / (done[-1] - start),
        "tiles_per_second_slides_2_to_n": sum(s["tiles"] for s in per_slide[1:]) / (done[-1] - done[0])
        if len(done) > 1
        else None,
        "per_slide": per_slide,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
