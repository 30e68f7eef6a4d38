"""Wall time of ``gs.adapt`` with its defaults, and before/after class-agnostic AP50 on held-out scenes.

    python benchmarks/bench_adapt.py                      # 40 photo-style scenes of 1296x966 (1.25 MP)
    python benchmarks/bench_adapt.py --photos DIR --count 40 --minutes 25

The target: 40 unlabelled photos of ~1.25 MP adapt within 30 minutes on 2 CPU
cores with the defaults. Without ``--photos`` the photos are synthetic
photo-style scenes (``garden_scene(style="photo")``, seeds from 8,700,000)
and AP50 is measured on 5 more (seeds from 9,200,000, never trained on), at
``segment``'s defaults with ``score_threshold=0.05``. Prints one JSON line:
wall time, the load average, the adapt report's rounds, AP50 before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import peak_rss_mb  # noqa: E402
from eval_garden import coco_ap  # noqa: E402

PLANT = ["__background__", "plant"]


def _ap(model, pairs) -> float:
    import napari_gardenseg as gs

    gts, preds = [], []
    for image, labels in pairs:
        r = gs.segment(image, model, score_threshold=0.05)
        gts.append((labels, {int(k): "plant" for k in np.unique(labels) if k > 0}))
        preds.append((r.refined if r.refined is not None else r.labels, [1] * len(r.scores), r.scores))
    return round(coco_ap(gts, preds, PLANT)["AP50"], 3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", help="folder of photos (default: synthetic photo-style scenes)")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--minutes", type=float, default=None, help="adapt's budget (default: adapt's own)")
    p.add_argument("--keep", help="also write the adapted model (and its report) to this path")
    args = p.parse_args(argv)
    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    held = []
    if args.photos:
        files = sorted(f for f in Path(args.photos).iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"))
        photos = [str(f) for f in files[: args.count]]
    else:
        photos = [
            garden_scene(s, shape=(966, 1296), style="photo")[0] for s in range(8_700_000, 8_700_000 + args.count)
        ]
        held = [garden_scene(s, shape=(966, 1296), style="photo")[:2] for s in range(9_200_000, 9_200_005)]
    before = _ap("garden", held) if held else None
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = gs.adapt(photos, "garden", minutes=args.minutes, output=Path(tmp) / "a.pt")
        seconds = time.perf_counter() - t0
        report = json.loads(path.with_suffix(".json").read_text())
        after = _ap(gs.load_model(path, device="cpu"), held) if held else None
        if args.keep:
            import shutil

            for src in (path, path.with_suffix(".json")):
                shutil.copy2(src, Path(args.keep).with_suffix(src.suffix))
    print(
        json.dumps(
            {
                "photos": len(photos),
                "adapt_seconds": round(seconds),
                "load_average": os.getloadavg(),
                "rounds": [{k: r.get(k) for k in ("round", "iterations", "agreement")} for r in report["rounds"]],
                "plants_harvested": report["plants_harvested"],
                "stopped": report["stopped"],
                "AP50_before": before,
                "AP50_after": after,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
