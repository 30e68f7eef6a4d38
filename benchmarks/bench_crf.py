"""Figures for the dense-CRF refinement (napari_gardenseg.crf).

    python benchmarks/bench_crf.py                 # sections 1-3, about 30 s on 2 CPU cores
    python benchmarks/bench_crf.py --backends      # the backends: agreement, speed against the model, memory
    python benchmarks/bench_crf.py --backends --rounds 3 --workloads garden,photo   # the issue's figures
    python benchmarks/bench_crf.py --backends --device cuda --big   # + 4 megapixels, 50 instances

Backends (``--backends``; each (workload, backend) runs in its own process so
that its peak RSS is its own, ``--rounds`` times, the backends interleaved;
in each, medians of ``--repeat`` interleaved model and CRF runs):

* agreement of the torch backend's labels with pydensecrf's expected labels on
  the four reference cases (tests/data/pydensecrf), in % of pixels;
* workloads: ``garden`` (bench_segment.py's 1024x768 synthetic garden, 22
  plants), ``photo`` (a field photo resized to 1.2 MP, see :func:`workload`),
  ``big`` (2048x2048, 50 plants): the bundled model's inference
  (``segment(..., crf=False)``) against ``refine_masks`` on its instances with
  each backend ("auto": what a plain install runs), their ratio, the first
  call's time (model + CRF, numba's compile or cache load), the 1-minute load
  average, the peak RSS, and how each backend's refined labels agree with
  pydensecrf's (mean IoU per instance, % pixels).

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
from _memory import peak_rss_mb  # noqa: E402
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
    print(
        f"== 1. time: {image.shape[1]}x{image.shape[0]} image, {len(gt)} instances "
        f"(median of runs, {time.strftime('%Y-%m-%d')})"
    )
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
    print(
        f"  {name:29s} {len(r):3d} {r.mean():6.3f} {f.mean():6.3f} {d.min():+7.3f} {(d < -0.01).sum():4d}"
        f" {deleted:4d} {min(ratio):6.2f}"
    )


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


def reference_agreement():
    from test_crf import reference_case

    print("== agreement with pydensecrf's expected labels (tests/data/pydensecrf)")
    for case in ["1", "1-b", "2", "3"]:
        image, prob, expected = reference_case(case)
        labels = refine(image, prob, CRFParams(backend="torch")).argmax(0) + 1
        print(
            f"  case {case:4s} {image.shape[1]}x{image.shape[0]}, {prob.shape[0]} labels: "
            f"{100 * (labels == expected).mean():.4f} % of pixels equal"
        )


PHOTO = Path(__file__).resolve().parents[2] / "shared" / "real" / "photos" / "weed-ai" / "cobbity_wheat_image-1.jpg"


def workload(name: str, photo: str | None = None):
    """The image of a workload: "garden" (bench_segment.py's 1024x768 garden, 22 plants),
    "photo" (a field photo resized to 1.2 MP; default: Weed-AI's Cobbity wheat image-1,
    credit Guy Coleman, CC BY 4.0, via Weed-AI/Weed-AI, MIT) or "big" (2048x2048, 50 plants)."""
    from napari_gardenseg.synthetic import garden_scene

    if name == "big":
        return garden_scene(8_000_301, shape=(2048, 2048), n_plants=(50, 50))[0]
    if name == "photo":
        from PIL import Image

        path = Path(photo) if photo else PHOTO
        if not path.exists():
            raise SystemExit(f"{path} not found: pass --photo PATH (an RGB photo; it is resized to 1.2 MP)")
        im = Image.open(path).convert("RGB")
        f = (1.2e6 / (im.width * im.height)) ** 0.5
        return np.asarray(im.resize((round(im.width * f), round(im.height * f)), Image.BILINEAR))
    return garden_scene(8_000_201, shape=(768, 1024), n_plants=(22, 22))[0]  # as bench_segment.py


def one_backend(backend: str, device: str, repeat: int, name: str, photo: str | None) -> dict:
    """Model and CRF time for one backend, in this process (for its peak RSS): medians of
    ``repeat`` interleaved runs (model, CRF, model, CRF, ...) after one warm-up of each."""
    import os

    import torch

    import napari_gardenseg as gs
    from napari_gardenseg.crf import refine_masks

    image = workload(name, photo)
    model = gs.load_model("garden", device=device)
    params = replace(CRFParams.from_any(model.meta.get("crf")), backend=backend)
    t0 = time.perf_counter()
    result = gs.segment(image, model, crf=False, keep_soft_masks=True)  # warm-up
    out = refine_masks(image, result.instances, params, device=device)  # warm-up (numba: compile or load)
    first = time.perf_counter() - t0

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t_model, t_crf = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = gs.segment(image, model, crf=False, keep_soft_masks=True)
        t_model.append(time.perf_counter() - t0)
        sync()
        t0 = time.perf_counter()
        out = refine_masks(image, result.instances, params, device=device)
        sync()
        t_crf.append(time.perf_counter() - t0)
    from napari_gardenseg._instances import paint

    np.save(f"/tmp/bench_crf_{backend}_{name}.npy", paint(out))
    m, c = float(np.median(t_model)), float(np.median(t_crf))
    return {
        "backend": backend,
        "why": out.meta["crf_backend_reason"],
        "device": device,
        "image": f"{image.shape[1]}x{image.shape[0]}",
        "instances": len(result.instances),
        "model_s": round(m, 3),
        "crf_s": round(c, 3),
        "crf_over_model": round(c / m, 3),
        "first_call_s": round(first, 2),
        "torch_threads": torch.get_num_threads(),
        "load_1min": round(os.getloadavg()[0], 2),
        "peak_rss_mb": peak_rss_mb(),
        "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None,
    }


def backends(device: str, repeat: int, names: list[str], photo: str | None, rounds: int):
    """Each (workload, backend) in its own process, ``rounds`` times interleaved; medians."""
    import json
    import subprocess

    from napari_gardenseg.crf._numba import available as numba_available
    from napari_gardenseg.crf._pydensecrf import available

    reference_agreement()
    print(
        f"== garden model + CRF per backend (medians of {repeat} interleaved runs x {rounds} processes; "
        f"{time.strftime('%Y-%m-%d %H:%M')}; check the machine's load when you read these)"
    )
    kinds = (["numba"] if numba_available() else []) + (["pydensecrf"] if available() else []) + ["torch", "auto"]
    for name in names:
        rows = {k: [] for k in kinds}
        for _ in range(rounds):
            for backend in kinds:
                dev = device if backend in ("torch", "auto") else "cpu"
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        backend,
                        "--device",
                        dev,
                        "--repeat",
                        str(repeat),
                        "--workload",
                        name,
                    ]
                    + (["--photo", photo] if photo else []),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rows[backend].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"-- {name}")
        for backend, runs in rows.items():
            row = dict(runs[0])
            for key in ("model_s", "crf_s", "crf_over_model", "load_1min", "first_call_s"):
                row[key] = round(float(np.median([r[key] for r in runs])), 3)
            row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            print("  " + json.dumps(row))
        ref = "pydensecrf" if "pydensecrf" in kinds else kinds[0]
        a = np.load(f"/tmp/bench_crf_{ref}_{name}.npy")
        for other in kinds:
            if other == ref:
                continue
            b = np.load(f"/tmp/bench_crf_{other}_{name}.npy")
            ious = [
                iou(a == k, b == k)
                for k in range(1, int(max(a.max(), b.max())) + 1)
                if (a == k).any() or (b == k).any()
            ]
            print(
                f"  {other} vs {ref} refined labels: mean IoU {np.mean(ious):.4f} (min {np.min(ious):.4f}),"
                f" {100 * (a == b).mean():.3f} % of pixels equal"
            )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1, help="processes per backend, interleaved")
    ap.add_argument("--workloads", default="garden,photo", help="comma-separated: garden, photo, big")
    ap.add_argument("--photo", default=None, help="the photo of the 'photo' workload (resized to 1.2 MP)")
    ap.add_argument("--big", action="store_true", help="add the 2048x2048 workload")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="garden", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import json

        print(json.dumps(one_backend(args.one, args.device, args.repeat, args.workload, args.photo)))
    elif args.backends:
        names = args.workloads.split(",") + (["big"] if args.big else [])
        backends(args.device, args.repeat, names, args.photo, args.rounds)
    else:
        timing()
        all_scenes = scenes()
        harm_checks(all_scenes)
        ablation(all_scenes)
