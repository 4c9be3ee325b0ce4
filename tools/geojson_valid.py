#!/usr/bin/env python3
"""Checks GeoJSON outputs as a consumer does: every polygon valid by shapely (OGC, GEOS's
`is_valid`), exterior rings counterclockwise and holes clockwise (RFC 7946, on the
coordinates as numbers), every geometry inside the slide's level-0 rectangle, and an `id`
on every feature, a UUID, unique across all the files given.

    tools/geojson_valid.py WIDTH HEIGHT FILE.geojson...

Prints one line per file and exits 1 when anything fails (2 when shapely is missing).
"""

import json
import sys
import uuid

try:
    import shapely
    from shapely.geometry import box, shape
    from shapely.validation import explain_validity
except ImportError:
    print("shapely is not importable", file=sys.stderr)
    sys.exit(2)


def check(path, slide, seen):
    problems = []
    with open(path) as f:
        features = json.load(f)["features"]
    for i, feature in enumerate(features):
        fid = feature.get("id")
        try:
            uuid.UUID(fid)
        except (TypeError, ValueError, AttributeError):
            problems.append(f"feature {i}: id {fid!r} is not a UUID")
        if fid in seen:
            problems.append(f"feature {i}: id {fid} repeats {seen[fid]}")
        seen[fid] = f"{path} feature {i}"
        geom = shape(feature["geometry"])
        if not geom.is_valid:
            problems.append(f"feature {i}: {explain_validity(geom)}")
        if not slide.covers(geom):
            problems.append(f"feature {i}: outside the slide, bounds {geom.bounds}")
        polygons = geom.geoms if geom.geom_type == "MultiPolygon" else [geom]
        for p in polygons:
            if not shapely.is_ccw(p.exterior):
                problems.append(f"feature {i}: exterior ring clockwise")
            if any(shapely.is_ccw(h) for h in p.interiors):
                problems.append(f"feature {i}: a hole counterclockwise")
    return len(features), problems


def main():
    width, height, paths = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    slide = box(0, 0, width, height)
    seen = {}
    failed = False
    for path in paths:
        count, problems = check(path, slide, seen)
        verdict = "invalid" if problems else "valid"
        print(f"{path}: {count} features, {verdict} (shapely {shapely.__version__})")
        for p in problems[:20]:
            print(f"  {p}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        failed |= bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
