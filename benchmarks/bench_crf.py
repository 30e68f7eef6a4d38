"""Figures for the dense-CRF refinement (napari_gardenseg.crf).

    python benchmarks/bench_crf.py           # about 30 s on 2 CPU cores

1. Time: per-instance crops (refine_instances) against one (N+1)-label CRF
   over the whole frame (refine), 1024x768 with 20 instances.
2. Harm checks: IoU with the truth of the raw masks (soft > 0.5), of the
   guarded refinement (defaults) and of a plain per-instance CRF, on scenes of
   thin blades, compact leaves and crowded mixtures. The soft masks are what a
   28x28 Mask R-CNN mask head gives at best (see tests/test_crf.py).
3. Ablation: each guard of the default policy switched off in turn.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_crf import (  # noqa: E402  (scene helpers shared with the tests)
    GREEN,
    LEAF,
    coarse_soft_masks,
    crowded_case,
    iou,
    random_blade,
    random_leaf,
    render,
    single_object_case,
    visible,
)

from napari_gardenseg._instances import instances_to_labels  # noqa: E402
from napari_gardenseg.crf import CRFParams, refine, refine_instances  # noqa: E402


def frame_case(seed=0, shape=(768, 1024), blades=12, leaves=8):
    rng = np.random.default_rng(seed)
    masks = [random_blade(shape, rng, rng.choice([2, 3, 4, 5]), (80, 250), (0.1, 0.9)) for _ in range(blades)]
    masks += [random_leaf(shape, rng, (25, 60), (0.1, 0.9)) for _ in range(leaves)]
    colours = [np.add(GREEN, rng.normal(0, 8, 3)) for _ in range(blades)]
    colours += [np.add(LEAF, rng.normal(0, 10, 3)) for _ in range(leaves)]
    vis = visible(masks)
    keep = [i for i, v in enumerate(vis) if v.sum() > 30]
    vis = np.array([vis[i] for i in keep])
    image = render(vis, [colours[i] for i in keep], rng, noise=12)
    return image, vis, coarse_soft_masks(vis), rng.uniform(0.5, 1.0, len(vis)).astype(np.float32)


def whole_frame(image, soft, scores):
    """One CRF with labels background + each instance over the full frame."""
    prob = np.concatenate([1 - soft.max(0, keepdims=True), soft]) + 1e-4
    prob /= prob.sum(0)
    q = refine(image, prob)
    return q.argmax(0).astype(np.int32)


def plain_per_instance(image, soft, scores):
    """The naive version: default CRF per padded crop, argmax, best score wins."""
    h, w = soft.shape[1:]
    labels = np.zeros((h, w), np.int32)
    for i in np.argsort(-scores, kind="stable"):
        ys, xs = np.nonzero(soft[i] > 0.1)
        if ys.size == 0:
            continue
        crop = (slice(max(ys.min() - 24, 0), ys.max() + 25), slice(max(xs.min() - 24, 0), xs.max() + 25))
        s = soft[i][crop]
        claim = refine(image[crop], np.stack([1 - s, s])).argmax(0) == 1
        free = labels[crop] == 0
        labels[crop][claim & free] = i + 1
    return labels


def ious(labels, gt):
    return np.array([iou(labels == i + 1, g) for i, g in enumerate(gt)])


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def timing():
    image, gt, soft, scores = frame_case()
    print(f"== 1. time: {image.shape[1]}x{image.shape[0]} image, {len(gt)} instances "
          f"(median of runs, {time.strftime('%Y-%m-%d')})")
    raw = instances_to_labels(soft, scores)
    per, t_per = timed(lambda: refine_instances(image, soft, scores), 3)
    whole, t_whole = timed(lambda: whole_frame(image, soft, scores), 1)
    print(f"  raw (soft > 0.5)                  mean IoU {ious(raw, gt).mean():.3f}")
    print(f"  per-instance crops (default)      {t_per:6.2f} s   mean IoU {ious(per, gt).mean():.3f}")
    print(f"  whole frame, {len(gt) + 1} labels            {t_whole:6.2f} s   mean IoU {ious(whole, gt).mean():.3f}")
    print(f"  speed-up {t_whole / t_per:.1f}x")


def scenes():
    def one(cases):  # single-object cases as (image, truths, soft masks, scores)
        return [(im, gt[None], soft, np.ones(1, np.float32)) for im, gt, soft in cases]

    def thin(width, noise):
        return one(single_object_case("thin", s, width=width, noise=noise) for s in range(100, 108))

    def compact(noise):
        return one(single_object_case("compact", s, noise=noise) for s in range(100, 106))

    return {
        "thin 2px, noise 10": thin(2, 10),
        "thin 2px, noise 20": thin(2, 20),
        "thin 3px, noise 20": thin(3, 20),
        "compact, noise 10": compact(10),
        "compact, noise 25": compact(25),
        "crowded blades+leaves, n 12": [crowded_case(s) for s in range(100, 106)],
        "crowded blades+leaves, n 20": [crowded_case(s, noise=20) for s in range(100, 106)],
        "soil-coloured leaves, n 20": [
            crowded_case(s, blades=6, leaves=3, noise=20, leaf_colour=(135, 100, 70)) for s in range(100, 106)
        ],
        "touching green leaves, n 20": [
            crowded_case(s, blades=3, leaves=4, noise=20, leaf_colour=(70, 150, 60)) for s in range(100, 106)
        ],
    }


def harm_row(name, cases, method):
    raw_all, ref_all, deleted, ratio = [], [], 0, []
    for image, gt, soft, scores in cases:
        raw = instances_to_labels(soft, scores)
        out = method(image, soft, scores)
        raw_all.append(ious(raw, gt))
        ref_all.append(ious(out, gt))
        for k in range(1, len(gt) + 1):
            a_raw, a_out = (raw == k).sum(), (out == k).sum()
            if a_raw:
                deleted += a_out == 0
                ratio.append(a_out / a_raw)
    r, f = np.concatenate(raw_all), np.concatenate(ref_all)
    d = f - r
    print(f"  {name:29s} {len(r):3d} {r.mean():6.3f} {f.mean():6.3f} {d.min():+7.3f} {(d < -0.01).sum():4d}"
          f" {deleted:4d} {min(ratio):6.2f}")


HEADER = "  scene                          n    raw  refin   worst  #<-.01 #del minArea"


def harm_checks(all_scenes):
    for title, method in [
        ("guarded per-instance CRF (default CRFParams)", lambda im, s, sc: refine_instances(im, s, sc)),
        ("plain per-instance CRF (default parameters, no guards)", plain_per_instance),
    ]:
        print(f"== 2. harm: {title}")
        print("     (mean IoU with the truth; worst = lowest refined - raw IoU of one instance;")
        print("      #<-.01 instances worse by > 0.01; #del instances erased; minArea = min refined/raw area)")
        print(HEADER)
        for name, cases in all_scenes.items():
            harm_row(name, cases, method)


def ablation(all_scenes):
    print("== 3. ablation: one guard off at a time (mean IoU; worst; #<-.01; #del)")
    base = CRFParams()
    variants = {
        "default": base,
        "unary_weight=1": replace(base, unary_weight=1.0),
        "band=(0, 1)": replace(base, band=(0.0, 1.0)),
        "min_keep=0": replace(base, min_keep=0.0),
        "thin_width=0 (full gaussian)": replace(base, thin_width=0.0),
    }
    picked = {
        "thin 2px, noise 20": "thin 2px n20",
        "compact, noise 25": "compact n25",
        "crowded blades+leaves, n 20": "crowded n20",
        "soil-coloured leaves, n 20": "soil leaves n20",
        "touching green leaves, n 20": "green leaves n20",
    }
    print("  " + " " * 29 + "".join(f"{short:>23s}" for short in picked.values()))
    for vname, params in variants.items():
        cells = []
        for p in picked:
            r, f, dels = [], [], 0
            for image, gt, soft, scores in all_scenes[p]:
                raw = instances_to_labels(soft, scores)
                out = refine_instances(image, soft, scores, params)
                r.append(ious(raw, gt))
                f.append(ious(out, gt))
                dels += sum((raw == k).any() and not (out == k).any() for k in range(1, len(gt) + 1))
            r, f = np.concatenate(r), np.concatenate(f)
            cells.append(f"{f.mean():.3f} {(f - r).min():+.3f} {(f - r < -0.01).sum():2d} {dels:2d}")
        print(f"  {vname:29s}" + "".join(f"{c:>23s}" for c in cells))


if __name__ == "__main__":
    timing()
    all_scenes = scenes()
    harm_checks(all_scenes)
    ablation(all_scenes)
