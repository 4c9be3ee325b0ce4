#!/usr/bin/env python3
"""Crops of a synthetic slide for the README: tumour, benign mimics and normal tissue, each at
full resolution (0.5 µm/px) and 4x downscaled (2 µm/px, shown enlarged back to the same size).

    python3 tools/make_docs_crops.py SLIDE.svs OUT.jpg

Reads the slide and its SLIDE.lesions.json with flashslide's own reader (target/release/flashslide).
"""

import json
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw

SIZE = 384


def centroid(polygon):
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    return sum(xs) / len(xs), sum(ys) / len(ys)


def region(slide, x, y, tmp):
    out = f"{tmp}/r.png"
    subprocess.run(["target/release/flashslide", "region", slide, "--x", str(int(x)), "--y", str(int(y)),
                    "--width", str(SIZE), "--height", str(SIZE), "-o", out], check=True)
    return Image.open(out).convert("RGB")


def main():
    slide, out = sys.argv[1], sys.argv[2]
    truth = json.load(open(slide.replace(".svs", ".lesions.json")))
    picks = []
    lesion = max(truth["lesions"], key=lambda l: l["area_um2"])
    picks.append(("tumour (micrometastasis)", centroid(lesion["polygon"])))
    for kind, label in (("germinal_centre", "germinal centre (mimic)"), ("histiocytes", "sinus histiocytes (mimic)")):
        ms = [m for m in truth["benign_mimics"] if m["kind"] == kind]
        if ms:
            picks.append((label, centroid(ms[len(ms) // 2]["polygon"])))
    # Normal cortex: between the first tissue outline's edge and its centre.
    t = truth["tissue"][0]
    cx, cy = centroid(t)
    ex, ey = t[0]
    picks.append(("lymphoid cortex", (cx + 0.75 * (ex - cx), cy + 0.75 * (ey - cy))))
    label_h = 22
    sheet = Image.new("RGB", (2 * SIZE + 10, len(picks) * (SIZE + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    with tempfile.TemporaryDirectory() as tmp:
        for row, (label, (x, y)) in enumerate(picks):
            full = region(slide, x - SIZE / 2, y - SIZE / 2, tmp)
            small = full.resize((SIZE // 4, SIZE // 4), Image.BOX).resize((SIZE, SIZE), Image.BILINEAR)
            top = row * (SIZE + label_h)
            draw.text((4, top + 4), f"{label}: 0.5 µm/px (left), downscaled 4x to 2 µm/px (right); {SIZE // 2} µm wide",
                      fill="black")
            sheet.paste(full, (0, top + label_h))
            sheet.paste(small, (SIZE + 10, top + label_h))
    sheet.save(out, quality=85)


if __name__ == "__main__":
    main()
