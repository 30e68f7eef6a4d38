"""How well tiled runs agree with whole-image runs, beside the network's own shift variance.

    python benchmarks/tile_agreement.py [--model M] [--count 8]

Crowded synthetic scenes (768x1024, 18-24 plants, seeds from 9,000,321, reserved for
evaluation), ``segment(crf=False, scale=1.0)`` whole against 512-px tiles overlapping by
128 px (6 tiles), and whole against the same scene moved by 16 px: F1 of instances matched
one to one at IoU >= 0.5 (``tests/test_tiling.py``'s ``match_f1``). Tiling cannot agree
better than the network agrees with itself shifted; prints per scene and the means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _memory import peak_rss_mb  # noqa: E402
from test_tiling import match_f1  # noqa: E402


def main(argv=None):
    from napari_gardenseg import segment
    from napari_gardenseg.synthetic import garden_scene

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="garden")
    p.add_argument("--count", type=int, default=8)
    args = p.parse_args(argv)
    rows = []
    for seed in range(9_000_321, 9_000_321 + args.count):
        image = garden_scene(seed, shape=(768, 1024), n_plants=(18, 24))[0]
        whole = segment(image, args.model, crf=False, scale=1.0)
        tiled = segment(image, args.model, crf=False, scale=1.0, tile_size=512, tile_overlap=128)
        shifted = segment(np.ascontiguousarray(image[16:, 16:]), args.model, crf=False, scale=1.0)
        rows.append(
            {
                "seed": seed,
                "whole": len(whole),
                "tiled": len(tiled),
                "F1 tiled": round(match_f1(whole.labels, tiled.labels)[0], 3),
                "F1 shifted": round(match_f1(whole.labels[16:, 16:], shifted.labels)[0], 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    means = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("F1 tiled", "F1 shifted")}
    print(json.dumps({"model": args.model, "scenes": len(rows), **means, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
