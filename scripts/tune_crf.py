"""Choose the CRF settings for a model on TRAINING seeds and store them in its checkpoint.

    python scripts/tune_crf.py --model runs/garden.pt --seeds 100:140 [--write]

The model runs once per scene; each candidate setting then refines the same soft
masks. Candidates are ranked by COCO mask AP of the refined labels, then mean
IoU of matched instances. ``--write`` saves the winner as ``meta["crf"]`` in the
checkpoint, which ``segment`` uses when ``crf_params`` is not given. Seeds from
9,000,000 up (evaluation) are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from eval_garden import coco_ap, matched_iou  # noqa: E402

import napari_gardenseg as gs  # noqa: E402
from napari_gardenseg.crf import CRFParams, refine_instances  # noqa: E402
from napari_gardenseg.synthetic import EVAL_SEED_START, garden_scene  # noqa: E402

GRID = {
    "bilateral_srgb": [8, 13, 20],
    "bilateral_compat": [5, 10],
    "unary_weight": [1.0, 2.0, 3.0],
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/garden.pt")
    p.add_argument("--seeds", default="100:140")
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    a, b = map(int, args.seeds.split(":"))
    if b > EVAL_SEED_START:
        raise SystemExit("evaluation seeds (>= 9,000,000) must not be used for tuning")
    model = gs.load_model(args.model, device="cpu")
    cases = []
    for seed in range(a, b):
        image, labels, classes = garden_scene(seed)
        r = gs.segment(image, model, crf=False, keep_soft_masks=True)
        cases.append((image, labels, classes, r))
    gts = [(c[1], c[2]) for c in cases]
    raw = coco_ap(gts, [(c[3].labels, c[3].class_ids, c[3].scores) for c in cases], model.class_names)
    raw_iou = np.mean(sum((matched_iou(c[1], c[3].labels, c[3].scores)[0] for c in cases), []))
    print(f"raw: AP {raw['AP']:.4f} AP50 {raw['AP50']:.4f} mIoU {raw_iou:.4f}", flush=True)
    rows = []
    for values in itertools.product(*GRID.values()):
        params = CRFParams(**dict(zip(GRID, values)))
        dts, ious = [], []
        for image, labels, _, r in cases:
            ref = refine_instances(image, r.soft_masks, r.scores, params)
            dts.append((ref, r.class_ids, r.scores))
            ious += matched_iou(labels, ref, r.scores)[0]
        ap = coco_ap(gts, dts, model.class_names)
        rows.append((ap["AP"], float(np.mean(ious)), ap["AP50"], dict(zip(GRID, values))))
        print(
            f"{dict(zip(GRID, values))}: AP {ap['AP']:.4f} AP50 {ap['AP50']:.4f} mIoU {np.mean(ious):.4f}", flush=True
        )
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    best = rows[0]
    print("best:", json.dumps({"AP": best[0], "mIoU": best[1], "AP50": best[2], **best[3]}))
    if args.write:
        chosen = dataclasses.asdict(CRFParams(**best[3]))
        chosen["band"] = list(chosen["band"])
        ck = torch.load(args.model, weights_only=True)
        ck.setdefault("meta", {})["crf"] = chosen
        ck["meta"]["crf_tuning"] = {"seeds": f"{a}..{b - 1}", "raw_AP": raw["AP"], "crf_AP": best[0], "grid": GRID}
        torch.save(ck, args.model)
        print(f"wrote meta['crf'] = {chosen} into {args.model}")


if __name__ == "__main__":
    main()
