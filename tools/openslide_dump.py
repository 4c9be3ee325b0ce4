#!/usr/bin/env python3
"""What OpenSlide makes of a slide: its properties and some regions, for the tests to compare.

    python3 tools/openslide_dump.py SLIDE OUTDIR LEVEL,X,Y,W,H ...

Writes OUTDIR/properties.json and OUTDIR/region-N.png (RGBA, as openslide-python returns it)
for each region. Exit code 3 when openslide-python (with openslide-bin) is not installed.
"""

import json
import os
import sys

try:
    import openslide
except ImportError:
    print("openslide-python is not installed (pip install openslide-python openslide-bin)", file=sys.stderr)
    sys.exit(3)


def main():
    slide_path, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    slide = openslide.OpenSlide(slide_path)
    with open(os.path.join(out, "properties.json"), "w") as f:
        json.dump(dict(slide.properties), f, indent=1, sort_keys=True)
    for i, spec in enumerate(sys.argv[3:]):
        level, x, y, w, h = (int(v) for v in spec.split(","))
        slide.read_region((x, y), level, (w, h)).save(os.path.join(out, f"region-{i}.png"))


if __name__ == "__main__":
    main()
