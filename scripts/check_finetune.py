"""Does fine-tuning with train()'s defaults help on photographs? Before/after class-agnostic AP50.

    python scripts/check_finetune.py --base garden --iterations 100              # tray halves
    python scripts/check_finetune.py --base garden --iterations 100 --set scale=1.0 --set lr=1e-3
    python scripts/check_finetune.py --base garden --synthetic 5 --iterations 150

Real check (default): fine-tune on the left half of PlantCV's tray photo
(``../shared/real``, approximate reference labels), evaluate on the right half.
``--synthetic N``: fine-tune on N photo-style scenes at 1296x966 (the size of the
team's field photos; seeds from 8,600,000) and evaluate on 5 held-out ones (seeds
from 9,100,000). ``--set key=value`` overrides a train() argument. Prints the
AP50 (raw and CRF) at ``segment``'s default scale before and after, and the time
(wall seconds; the process's CPU seconds, which a busy machine inflates less; the load).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from eval_garden import coco_ap  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
PLANT = ["__background__", "plant"]


def _ap(model, pairs, scale):
    import napari_gardenseg as gs

    gts, raw, ref = [], [], []
    for image, labels in pairs:
        r = gs.segment(image, model, score_threshold=0.3, crf=True, scale=scale)
        gts.append((labels, {int(k): "plant" for k in np.unique(labels) if k > 0}))
        raw.append((r.labels, [1] * len(r.scores), r.scores))
        ref.append((r.refined, [1] * len(r.scores), r.scores))
    return {"raw": round(coco_ap(gts, raw, PLANT)["AP50"], 3), "crf": round(coco_ap(gts, ref, PLANT)["AP50"], 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="garden")
    p.add_argument("--iterations", type=int, default=None, help="default: train()'s")
    p.add_argument("--synthetic", type=int, default=0)
    p.add_argument("--eval-scale", default=None, help="segment's scale for the evaluation (default None)")
    p.add_argument("--set", action="append", default=[], help="key=value passed to train()")
    args = p.parse_args(argv)
    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    if args.synthetic:
        train_set = [
            garden_scene(s, shape=(966, 1296), style="photo") for s in range(8_600_000, 8_600_000 + args.synthetic)
        ]
        samples = [(im, lab, "plant") for im, lab, _ in train_set]
        held = [garden_scene(s, shape=(966, 1296), style="photo")[:2] for s in range(9_100_000, 9_100_005)]
    else:
        from PIL import Image

        rgb = np.asarray(Image.open(REAL / "tray.jpg").convert("RGB"))
        lab = np.asarray(Image.open(REAL / "tray_labels_approx.png")).astype(np.int32)
        w = lab.shape[1] // 2
        samples = [(np.ascontiguousarray(rgb[:, :w]), np.ascontiguousarray(lab[:, :w]), "plant")]
        held = [(np.ascontiguousarray(rgb[:, w:]), np.ascontiguousarray(lab[:, w:]))]
    scale = args.eval_scale if args.eval_scale in (None, "auto") else float(args.eval_scale)
    kwargs = {}
    for item in args.set:
        key, value = item.split("=", 1)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    if args.iterations:
        kwargs["iterations"] = args.iterations
    base = gs.load_model(args.base, device="cpu")
    before = _ap(base, held, scale)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        path = gs.train(samples, base=base, output=Path(tmp) / "ft.pt", device="cpu", **kwargs)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = _ap(gs.load_model(path, device="cpu"), held, scale)
    print(
        json.dumps(
            {
                "base": args.base,
                "data": f"{args.synthetic} synthetic photo scenes"
                if args.synthetic
                else "tray left half -> right half",
                "train_kwargs": kwargs,
                "eval_scale": scale,
                "before": before,
                "after": after,
                "train_seconds": round(seconds),
                "train_cpu_seconds": round(cpu),
                "load_1min": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
