"""The intensity rule measured: copies of one picture in other dtypes, and the rule the field uses instead.

    python benchmarks/eval_intensity.py --count 10                 # 10 held-out garden scenes, 384x384
    python benchmarks/eval_intensity.py --count 10 --style photo   # photograph-like scenes

For each scene (seeds from 9,000,000: never used for training) this segments,
with the bundled model and no CRF:

* the 8-bit scene, and a dim version of it (values 2..126) as uint8, as uint16
  (x257) and as float32 (0..255 and 0..1): the package's rule
  (``napari_gardenseg._image_arrays.intensity_range``) must give identical labels;
* the 8-bit scene and the dim one after a joint-channel 1..99.8 percentile
  stretch (csbdeep/stardist's ``normalize``; cellpose uses 1..99), handed over
  as float 0..1, which the package keeps as is: what the percentile rule would
  have given.

Prints class-agnostic mask AP50 (pycocotools, as ``eval_garden.py``) for each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _memory import peak_rss_mb  # noqa: E402
from eval_garden import coco_ap  # noqa: E402


def percentile_stretch(image: np.ndarray, low=1.0, high=99.8) -> np.ndarray:
    """csbdeep's normalize(x, 1, 99.8) over all channels together, clipped to 0..1, as float32."""
    lo, hi = np.percentile(image, [low, high])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=int, default=9_000_000)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--style", choices=("garden", "photo"), default="garden")
    args = p.parse_args(argv)

    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    model = gs.load_model("garden", device="cpu")
    variants = {
        "uint8": lambda im, dim: im,
        "uint8 percentile": lambda im, dim: percentile_stretch(im),
        "dim uint8": lambda im, dim: dim,
        "dim uint16 x257": lambda im, dim: dim.astype(np.uint16) * 257,
        "dim float32 0..255": lambda im, dim: dim.astype(np.float32),
        "dim float32 0..1": lambda im, dim: dim.astype(np.float32) / 255,
        "dim percentile": lambda im, dim: percentile_stretch(dim),
    }
    gts, dts = [], {k: [] for k in variants}
    same = {k: 0 for k in variants if k.startswith("dim ") and k != "dim uint8" and "percentile" not in k}
    t0 = time.perf_counter()
    for seed in range(args.start, args.start + args.count):
        image, labels, classes = garden_scene(seed, shape=(args.size, args.size), style=args.style)
        dim = (2 + np.rint(image * (124 / 255))).astype(np.uint8)
        gts.append((labels, {k: "plant" for k in classes}))
        results = {k: gs.segment(make(image, dim), model, crf=False) for k, make in variants.items()}
        for k, r in results.items():
            dts[k].append((r.labels, [1] * len(r), r.scores))
        for k in same:
            same[k] += bool(np.array_equal(results[k].labels, results["dim uint8"].labels))
    plant = ["__background__", "plant"]
    out = {
        "scenes": args.count,
        "size": args.size,
        "style": args.style,
        "AP50_class_agnostic": {k: round(coco_ap(gts, d, plant)["AP50"], 4) for k, d in dts.items()},
        "instances": {k: int(sum(len(np.unique(lab)) - 1 for lab, _, _ in d)) for k, d in dts.items()},
        "scenes_with_labels_identical_to_dim_uint8": same,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
