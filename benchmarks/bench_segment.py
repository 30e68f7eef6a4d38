"""Speed and memory of segment() against the bare torchvision call.

    python benchmarks/bench_segment.py            # prints a table; about 2-4 minutes on 2 cores

Two workloads on a 1024x768 image with about 20 instances:

* ``coco-sized``: torchvision's maskrcnn_resnet50_fpn_v2 (the "coco" model's
  network; random weights since COCO weights cannot be downloaded here, with the
  score threshold at 0 and 20 detections per image so that the mask head and the
  pasting do the work of 20 instances). ``segment(..., crf=False)`` against
  ``net([x])`` in the same process, interleaved; target ratio <= 1.05.
* ``garden``: the bundled model on a synthetic 1024x768 garden with ~20 plants:
  the model's own inference time against the time the CRF adds (target <= 0.5x).

Each workload runs in its own subprocess so its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
from _memory import peak_rss_mb


def coco_sized(repeat: int) -> dict:
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    torch.manual_seed(0)
    net = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).eval()
    net.roi_heads.score_thresh = 0.0
    net.roi_heads.detections_per_img = 20
    image, _, _ = garden_scene(8_000_200, shape=(768, 1024), n_plants=(20, 20))
    model = gs.load_model(net, device="cpu")
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255

    def bare():
        with torch.inference_mode():
            return net([x])[0]

    def ours():
        return gs.segment(image, model, score_threshold=0.0, crf=False)

    bare(), ours()  # warm-up
    t_bare, t_ours = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        bare()
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = ours()
        t_ours.append(time.perf_counter() - t0)
    b, o = statistics.median(t_bare), statistics.median(t_ours)
    return {
        "workload": "coco-sized (resnet50-fpn-v2, 20 detections)",
        "bare_torchvision_s": round(b, 3),
        "segment_no_crf_s": round(o, 3),
        "ratio": round(o / b, 3),
        "instances": len(res),
        "peak_rss_mb": peak_rss_mb(),
    }


def garden(repeat: int) -> dict:
    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    image, labels, _ = garden_scene(8_000_201, shape=(768, 1024), n_plants=(22, 22))
    model = gs.load_model("garden", device="cpu")
    gs.segment(image, model, crf=True)  # warm-up
    t_raw, t_crf = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gs.segment(image, model, crf=False)
        t_raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = gs.segment(image, model, crf=True)
        t_crf.append(time.perf_counter() - t0)
    raw, both = statistics.median(t_raw), statistics.median(t_crf)
    return {
        "workload": "garden model, 1024x768 garden",
        "gt_plants": int(labels.max()),
        "instances": len(res),
        "model_s": round(raw, 3),
        "crf_added_s": round(both - raw, 3),
        "crf_over_model": round((both - raw) / raw, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", choices=["coco", "garden"])
    args = p.parse_args(argv)
    if args.only:
        out = coco_sized(args.repeat) if args.only == "coco" else garden(args.repeat)
        print(json.dumps(out))
        return
    for which in ("coco", "garden"):
        proc = subprocess.run(
            [sys.executable, __file__, "--only", which, "--repeat", str(args.repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(row, indent=1))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
