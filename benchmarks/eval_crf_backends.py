"""Does the CRF backend change the garden model's quality? AP of numba and torch against pydensecrf.

    python benchmarks/eval_crf_backends.py                 # bundled model, seeds 9,000,000..9,000,029
    python benchmarks/eval_crf_backends.py --count 100     # all of eval_garden.py's held-out seeds

On held-out synthetic garden scenes (seeds from 9,000,000, never used for
training or tuning), the model runs once per scene and its instances are
refined by ``refine_masks`` with each installed backend (the model's stored
CRF settings), then painted as ``segment`` does. Prints COCO mask AP and AP50
(pycocotools, per class and class-agnostic) of the raw and of each backend's
refined labels, each backend's AP difference from pydensecrf, the reference
(the issue's bar: within 0.005), and how many refined pixels and instances
differ from pydensecrf's. Without pydensecrf (the ``crf`` extra), numba is the
reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import peak_rss_mb  # noqa: E402
from eval_garden import _agnostic, coco_ap  # noqa: E402  (the AP code of the garden evaluation)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="garden")
    p.add_argument("--start", type=int, default=9_000_000)
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--score-threshold", type=float, default=0.5)
    args = p.parse_args(argv)

    import importlib.util

    import napari_gardenseg as gs
    from napari_gardenseg._instances import paint
    from napari_gardenseg.crf import CRFParams, refine_masks
    from napari_gardenseg.synthetic import garden_scene

    model = gs.load_model(args.model, device="cpu")
    params = CRFParams.from_any(model.meta.get("crf"))
    backends = tuple(b for b in ("pydensecrf", "numba", "torch") if importlib.util.find_spec(b) is not None)
    reference, others = backends[0], backends[1:]
    gts, raw, refined = [], [], {b: [] for b in backends}
    seconds = {b: 0.0 for b in backends}
    differ_px = {b: 0 for b in others}
    differ_inst = {b: 0 for b in others}
    total_px = n_inst = 0
    for seed in range(args.start, args.start + args.count):
        image, labels, classes = garden_scene(seed, shape=(512, 512))
        r = gs.segment(image, model, score_threshold=args.score_threshold, crf=False, keep_soft_masks=True)
        gts.append((labels, classes))
        raw.append((r.labels, r.class_ids, r.scores))
        # segment's refined layer: the kept instances refined, painted with their ids
        kept = r.instances
        out = {}
        for b in backends:
            t0 = time.perf_counter()
            out[b] = paint(refine_masks(image, kept, replace(params, backend=b), 0.5), 0.5)
            seconds[b] += time.perf_counter() - t0
            refined[b].append((out[b], r.class_ids, r.scores))
        a = out[reference]
        total_px += a.size
        n_inst += len(kept)
        for b in others:
            t = out[b]
            differ_px[b] += int((a != t).sum())
            differ_inst[b] += sum(bool(((a == k) != (t == k)).any()) for k in range(1, len(kept) + 1))
    plant = ["__background__", "plant"]
    report = {
        "model": str(model.source),
        "scenes": args.count,
        "reference": reference,
        "instances": n_inst,
        "raw": coco_ap(gts, raw, model.class_names),
        "raw_agnostic": coco_ap(*_agnostic(gts, raw), plant),
    }
    for b in backends:
        report[b] = coco_ap(gts, refined[b], model.class_names)
        report[f"{b}_agnostic"] = coco_ap(*_agnostic(gts, refined[b]), plant)
        report[f"{b}_crf_seconds_per_scene"] = round(seconds[b] / args.count, 3)
    for b in others:
        report[f"ap_difference_{b}_minus_{reference}"] = {
            key: round(report[b][key] - report[reference][key], 5) for key in ("AP", "AP50")
        }
        report[f"ap_difference_{b}_agnostic"] = {
            key: round(report[f"{b}_agnostic"][key] - report[f"{reference}_agnostic"][key], 5) for key in ("AP", "AP50")
        }
        report[f"{b}_refined_pixels_differing_pct"] = round(100 * differ_px[b] / max(total_px, 1), 5)
        report[f"{b}_instances_differing"] = differ_inst[b]
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
