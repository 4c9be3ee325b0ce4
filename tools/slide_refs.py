"""What the test-slide makers share: the source pixels, and the reference helpers (RGBA
crops of a decoded level, hashes, PNGs, comparisons).

Imported by tools/make_dicom_slides.py and tools/make_vendor_slides.py (and the format
modules under tools/vendor_slides/); needs numpy, tifffile and pillow.
"""

import hashlib
import os
import sys

import numpy as np
import tifffile
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_test_slides import he_like  # noqa: E402  (the synthetic stain model)

SEED = 20261125
SOURCE = os.path.join("aperio", "CMU-1-Small-Region.svs")
MPP0 = 0.499  # micrometres per pixel of the source's level 0 (its AppMag 20 / MPP 0.499)


def source_pixels(shared):
    """Level 0 of CMU-1-Small-Region (tifffile decodes it as OpenSlide does), or without
    ../shared a seeded synthetic H&E-like image of the same size; and where it came from."""
    if shared is None:
        img = he_like(np.random.default_rng(SEED), 2967, 2220)
        return img, dict(kind="synthetic", seed=SEED, generator="tools/make_test_slides.py he_like")
    path = os.path.join(shared, SOURCE)
    if not os.path.isfile(path):
        sys.exit(f"{path} not found (leave out --shared for synthetic pixels)")
    return tifffile.imread(path, key=0), dict(kind="file", file=SOURCE.replace(os.sep, "/"), page=0)


def downsample(img, f):
    """Box average by a whole factor (the levels of every generated pyramid)."""
    if f == 1:
        return img
    return np.asarray(Image.fromarray(img).resize((img.shape[1] // f, img.shape[0] // f), Image.BOX))


def resize(img, w, h):
    return np.asarray(Image.fromarray(img).resize((w, h), Image.LANCZOS))

def label_image(text, barcode, w, h):
    im = Image.new("RGB", (w, h), (250, 250, 245))
    d = ImageDraw.Draw(im)
    d.rectangle([2, 2, w - 3, h - 3], outline=(40, 40, 120), width=2)
    for i, line in enumerate(text):
        d.text((8, 8 + 14 * i), line, fill=(10, 10, 10))
    bits = hashlib.sha256(barcode.encode()).digest()
    x = 8
    for byte in bits:
        for b in range(8):
            wide = 2 if byte >> b & 1 else 1
            if x + wide > w - 8:
                break
            d.rectangle([x, h - 34, x + wide - 1, h - 10], fill=(0, 0, 0))
            x += wide + 1
    return np.asarray(im)

def overview_image(full, label, w, h):
    """A glass slide seen from above: grey glass, the label at the left, the tissue."""
    im = Image.new("RGB", (w, h), (214, 218, 222))
    lab = Image.fromarray(label).resize((h * label.shape[1] // label.shape[0], h))
    im.paste(lab, (0, 0))
    th = h - 20
    tissue = Image.fromarray(full).resize((full.shape[1] * th // full.shape[0], th), Image.BOX)
    im.paste(tissue, (lab.width + (w - lab.width - tissue.width) // 2, 10))
    return np.asarray(im)


def tiles_of(img, tw, th, pad):
    """(col, row) -> tile of tw x th; edge tiles padded by edge replication or a colour."""
    H, W = img.shape[:2]
    across, down = -(-W // tw), -(-H // th)
    if pad == "edge":
        padded = np.pad(img, ((0, down * th - H), (0, across * tw - W), (0, 0)), mode="edge")
    else:
        padded = np.empty((down * th, across * tw, 3), np.uint8)
        padded[:] = pad
        padded[:H, :W] = img
    return {(c, r): np.ascontiguousarray(padded[r * th:(r + 1) * th, c * tw:(c + 1) * tw])
            for r in range(down) for c in range(across)}, across, down

def camera_fields(img, tw, th, fields):
    """Frames where a scanner's camera fields fall: field (c, r) at (c * step_x, r * step_y)
    moved by a jitter of up to 2 pixels (corners kept inside the image), so neighbours
    overlap and few corners lie on the tile grid; fields for which missing(c, r) is true are
    left out. Each field is tinted by its own brightness (-24, 0 or +24), so which of two
    overlapping fields shows is visible in the pixels. Returns ({(c, r): tile}, {(c, r): corner})."""
    H, W = img.shape[:2]
    sx, sy = fields["step"]
    padded = np.pad(img, ((0, th), (0, tw), (0, 0)), mode="edge").astype(np.int16)
    tiles, corners = {}, {}
    for r in range(-(-H // sy)):
        for c in range(-(-W // sx)):
            if fields["missing"](c, r):
                continue
            x = min(max(c * sx + (c * 7 + r * 3) % 5 - 2, 0), W - 1)
            y = min(max(r * sy + (c * 3 + r * 5) % 5 - 2, 0), H - 1)
            tint = ((c + 2 * r) % 3 - 1) * 24
            tiles[(c, r)] = np.ascontiguousarray(np.clip(padded[y:y + th, x:x + tw] + tint, 0, 255).astype(np.uint8))
            corners[(c, r)] = (x, y)
    return tiles, corners


def crop_rgba(rgb, mask, x, y, w, h):
    """The w x h region at (x, y) of a decoded level as RGBA: pixels the level does not
    cover (outside it, or where mask is False) transparent black, as OpenSlide gives them."""
    out = np.zeros((h, w, 4), np.uint8)
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x0 < x1 and y0 < y1:
        m = mask[y0:y1, x0:x1]
        part = np.dstack([rgb[y0:y1, x0:x1], np.full(m.shape, 255, np.uint8)])
        part[~m] = 0
        out[y0 - y:y1 - y, x0 - x:x1 - x] = part
    return out


def sha(rgba):
    return hashlib.sha256(np.ascontiguousarray(rgba).tobytes()).hexdigest()


def save_png(path, rgba):
    Image.fromarray(rgba, "RGBA").save(path, optimize=True)


def compare(a, b):
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return dict(mean_abs_diff=round(float(d.mean()), 4), max_abs_diff=int(d.max()), identical=bool(d.max() == 0))
