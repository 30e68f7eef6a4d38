"""Class-agnostic mask AP50 of a model on a real photograph with per-plant reference labels.

    python benchmarks/eval_real.py                                   # bundled model on PlantCV's tray photo
    python benchmarks/eval_real.py --model runs/garden-mobilenet.pt --scales 1 2 auto
    python benchmarks/eval_real.py --image photo.jpg --labels photo_labels.png

Default photo: ``../shared/real/tray.jpg`` with ``tray_labels_approx.png``
(PlantCV, MPL-2.0; an *approximate* reference made from an excess-green
threshold, see that folder's README). Reports, for the whole photo and for its
right half alone (the training script's real cut-outs come from the left half
only), pycocotools mask AP50 and AP with every instance one "plant":

* the model's raw masks and its CRF-refined masks, at each ``--scales`` value
  (``none`` = the model's own resize, a number = segment's ``scale``, ``auto`` =
  ``estimate_scale``);
* an excess-green threshold + connected components, no model (score = area).

A real photo is a sanity check here, not a benchmark: the reference favours the
threshold baseline (it was made with one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_garden import coco_ap  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
REAL = HERE.parent / "shared" / "real"
PLANT = ["__background__", "plant"]


def _gt(labels):
    return labels, {int(k): "plant" for k in np.unique(labels) if k > 0}


def threshold_baseline(rgb_u8, min_area=30):
    """Excess-green pixels, connected components; each component one plant scored by its area."""
    from scipy import ndimage

    from napari_gardenseg._scale import vegetation_mask

    lab, n = ndimage.label(vegetation_mask(rgb_u8.astype(np.float32) / 255))
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    keep = [k for k in range(1, n + 1) if areas[k] >= min_area]
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1)
    return lut[lab], [1] * len(keep), [float(areas[k]) for k in keep]


def _halves(rgb, labels):
    w = labels.shape[1]
    return {"whole": (rgb, labels), "right_half": (rgb[:, w // 2 :], labels[:, w // 2 :])}


def evaluate(model, rgb, labels, scales, score_threshold):
    import napari_gardenseg as gs
    from napari_gardenseg._scale import estimate_scale

    model = gs.load_model(model, device="cpu")
    out = {"model": str(model.source), "arch": model.arch, "score_threshold": score_threshold,
           "estimated_scale": round(estimate_scale(rgb, model), 3), "parts": {}}
    for part, (img, lab) in _halves(rgb, labels).items():
        img = np.ascontiguousarray(img)
        gt = [_gt(lab)]
        res = {"reference_instances": len(gt[0][1]),
               "threshold_baseline": coco_ap(gt, [threshold_baseline(img)], PLANT)}
        for scale in scales:
            s = None if scale == "none" else scale if scale == "auto" else float(scale)
            t0 = time.perf_counter()
            r = gs.segment(img, model, score_threshold=score_threshold, crf=True, scale=s)
            dt = time.perf_counter() - t0
            res[f"scale={scale}"] = {
                "raw": coco_ap(gt, [(r.labels, [1] * len(r.scores), r.scores)], PLANT),
                "crf": coco_ap(gt, [(r.refined, [1] * len(r.scores), r.scores)], PLANT),
                "detections": int(len(r.scores)),
                "seconds_with_crf": round(dt, 2),
            }
        out["parts"][part] = res
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="garden")
    p.add_argument("--image", default=str(REAL / "tray.jpg"))
    p.add_argument("--labels", default=str(REAL / "tray_labels_approx.png"))
    p.add_argument("--scales", nargs="+", default=["none", "1", "2", "auto"])
    p.add_argument("--score-threshold", type=float, default=0.3)
    args = p.parse_args(argv)
    from PIL import Image

    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    labels = np.asarray(Image.open(args.labels)).astype(np.int32)
    result = evaluate(args.model, rgb, labels, args.scales, args.score_threshold)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
