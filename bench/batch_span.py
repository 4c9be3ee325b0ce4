"""A `flashslide run` batch's time and stage 1's feed, from its outputs.

For each folder of a run's summaries (`<slide>.json`, copied from each slide's
summary.json, and `batch-report.json`): the time from the first slide opened (its finish
less its working seconds) to the last finish, and over the slides after the first to finish
(nvJPEG started) stage
1's tiles per second, the share of stage 1 spent waiting for decoded tiles, the share the
device sat idle, and where the decoding threads' time went.

    python3 bench/batch_span.py RUN_DIR [RUN_DIR...]
"""

import json
import os
import sys


def span(folder):
    report = json.load(open(f"{folder}/batch-report.json"))
    finish = {s["name"]: s["time"] for s in report["slides"]}
    order = sorted(finish, key=finish.get)
    runs = [json.load(open(f"{folder}/{name}.json")) for name in order]
    start = finish[order[0]] - runs[0]["seconds"]["total"]
    later = [r for r in runs[1:] or runs if r["tissue_tiles"] > 0]
    if not later:
        return f"{os.path.basename(folder)}: no slide with tissue tiles"
    stage1 = [r["seconds"]["stage1"] + r["seconds"]["stage1_waiting"] for r in later]
    rates = [r["tissue_tiles"] / s for r, s in zip(later, stage1)]
    waiting = [r["seconds"]["stage1_waiting"] / s for r, s in zip(later, stage1)]
    idle = [r["seconds"]["stage1_device_idle"] / s for r, s in zip(later, stage1)]
    # The device's decoders: their summed thread time, of it in nvJPEG's calls and waiting
    # for the device.
    decode = [(r["seconds"]["decode"], r["seconds"].get("decode_submit", 0.0), r["seconds"].get("decode_device_wait", 0.0)) for r in later]
    return (
        f"{os.path.basename(folder)}: {max(finish.values()) - start:.2f} s for {len(runs)} slides; "
        f"stage 1 over slides 2-: {min(rates):.0f}-{max(rates):.0f} tiles/s, "
        f"waiting {100 * min(waiting):.0f}-{100 * max(waiting):.0f}%, "
        f"device idle {100 * min(idle):.1f}-{100 * max(idle):.1f}%; decoders' time a slide "
        + ", ".join(f"{total:.2f} s ({calls:.2f} in calls, {device:.2f} waiting for the device)" for total, calls, device in decode)
    )


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(span(folder))
