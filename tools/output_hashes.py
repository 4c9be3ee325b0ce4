#!/usr/bin/env python3
"""Hashes every file a flashslide run wrote, so two builds can be shown to write the same outputs.

Usage: output_hashes.py OUT_DIR

Prints one line per file (relative path, SHA-256), sorted. JSON files are hashed after dropping
what legitimately differs between two runs of the same build: timings, the run's metadata, peak
memory, modification times; index.html is hashed with its timing cells blanked. Everything else
(heatmaps, TIFFs, GeoJSON, CSV, features) is hashed byte for byte.
"""
import hashlib
import json
import os
import re
import sys

VOLATILE = {"seconds", "export_seconds", "run", "peak_rss_bytes", "device_memory_bytes",
            "modified", "time", "finished", "started", "host", "command", "wall_seconds", "pid"}


def scrub(value):
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def digest(path):
    data = open(path, "rb").read()
    if path.endswith(".json"):
        data = json.dumps(scrub(json.loads(data)), sort_keys=True).encode()
    elif path.endswith(".html"):
        # Seconds and dates vary between runs; the structure and every other number must not.
        data = re.sub(rb"\d+(\.\d+)? ?s\b|\d{4}-\d\d-\d\dT[\d:]+Z", b"#", data)
    return hashlib.sha256(data).hexdigest()


def main():
    root = sys.argv[1]
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            print(f"{os.path.relpath(path, root)} {digest(path)}")


if __name__ == "__main__":
    main()
