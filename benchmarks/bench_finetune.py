"""Does fine-tuning on a handful of labelled scenes teach the garden model a new plant? And where does its time go?

    python benchmarks/bench_finetune.py [--iterations 300] [--scenes 8]
    python benchmarks/bench_finetune.py --profile 30 [--set key=value ...]   # time per part of an iteration
    python benchmarks/bench_finetune.py --memory 20 24   # peak memory of train on 20 photos of 24 MP

``--memory K MP``: ``train`` (2 iterations) on K JPEG files of MP megapixels
(a photo-style scene enlarged, with its labels as TIFF), the way a user's
camera photos come; prints the peak RSS and the seconds to the first iteration.

``--profile N``: ``train`` on 5 photo-style scenes of 1296x966 (1.25 MP, as
``scripts/check_finetune.py --synthetic 5``) for N iterations under cProfile;
prints seconds per iteration (wall; and the process's CPU seconds, which a
busy machine inflates less) and the share of data preparation (drawing,
cropping, augmenting, targets), the forward pass, the backward pass, gradient
clipping and the optimizer step. ``--set`` passes train() arguments.

The bundled model knows rosettes, flowering plants and weeds. Here gardens also
hold succulents (``garden_scene(..., kinds=...)``). ``train(base="garden")`` on
``--scenes`` such gardens (seeds 8,200,000+) gets new predictor heads for the
four classes; both models are then scored on 20 held-back gardens (seeds
8,300,000+): COCO mask AP50/AP over all four classes and for succulents alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _memory import peak_rss_mb  # noqa: E402
from eval_garden import coco_ap  # noqa: E402

import napari_gardenseg as gs  # noqa: E402
from napari_gardenseg.synthetic import CLASS_NAMES, garden_scene  # noqa: E402

KINDS = (*CLASS_NAMES, "succulent")


def score(model, scenes, names, only=None):
    gts, dts = [], []
    for image, labels, classes in scenes:
        r = gs.segment(image, model, crf=False)
        ids = [names.index(n) if n in names else 0 for n in r.class_names]
        if only:
            keep = [n == only for n in r.class_names]
            lab = labels.copy()
            for k, c in classes.items():
                if c != only:
                    lab[lab == k] = 0
            classes = {k: c for k, c in classes.items() if c == only}
            r_labels = r.labels.copy()
            for i, kp in enumerate(keep):
                if not kp:
                    r_labels[r_labels == i + 1] = 0
            gts.append((lab, classes))
            dts.append((r_labels, ids, r.scores))
        else:
            gts.append((labels, classes))
            dts.append((r.labels, ids, r.scores))
    return coco_ap(gts, dts, names)


def profile(iterations: int, overrides: list[str]) -> None:
    import ast
    import cProfile
    import os
    import pstats

    import torch

    train_set = [garden_scene(s, shape=(966, 1296), style="photo") for s in range(8_600_000, 8_600_005)]
    samples = [(im, lab, "plant") for im, lab, _ in train_set]
    kwargs = {}
    for item in overrides:
        key, value = item.split("=", 1)
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    base = gs.load_model("garden", device="cpu")
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        prof.enable()
        gs.train(samples, base=base, iterations=iterations, output=Path(tmp) / "p.pt", device="cpu", **kwargs)
        prof.disable()
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}

    def cum(*names):
        return sum(v[3] for (f, _, n), v in stats.items() if any(f.endswith(a) and n == b for a, b in names))

    parts = {
        "data (draw, crop, augment, targets)": cum(("_training.py", "_augment"), ("_training.py", "_targets")),
        "forward (losses)": cum(("generalized_rcnn.py", "forward")),
        "backward": cum(("_tensor.py", "backward")),
        "clip_grad_norm": cum(("clip_grad.py", "clip_grad_norm_"), ("clip_grad.py", "_no_grad_wrapper")),
        "optimizer step": cum(("optimizer.py", "wrapper")),
    }
    fit = cum(("_training.py", "fit"))
    print(
        json.dumps(
            {
                "iterations": iterations,
                "train_kwargs": kwargs,
                "torch_threads": torch.get_num_threads(),
                "train_seconds": round(total, 1),
                "train_cpu_seconds": round(cpu, 1),
                "fit_seconds": round(fit, 1),
                "seconds_per_iteration": round(fit / iterations, 3),
                "share_of_fit": {k: round(v / fit, 3) for k, v in parts.items()},
                "load_1min": round(os.getloadavg()[0], 2),
                "peak_rss_mb": peak_rss_mb(),
            },
            indent=1,
        )
    )


def memory(count: int, megapixels: float) -> None:
    import tifffile
    from PIL import Image

    image, labels, _ = garden_scene(8_600_100, shape=(966, 1296), style="photo")
    f = (megapixels * 1e6 / labels.size) ** 0.5
    size = (round(labels.shape[1] * f), round(labels.shape[0] * f))
    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(image).resize(size, Image.BICUBIC).save(Path(tmp) / "p.jpg", quality=90)
        tifffile.imwrite(Path(tmp) / "p_labels.tif", np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST)))
        samples = []
        for i in range(count):  # K files (hard links: one photo's bytes on disk, K reads)
            (Path(tmp) / f"p{i}.jpg").hardlink_to(Path(tmp) / "p.jpg")
            samples.append((Path(tmp) / f"p{i}.jpg", Path(tmp) / "p_labels.tif", "plant"))
        first = []
        t0 = time.perf_counter()
        gs.train(
            samples,
            iterations=2,
            output=Path(tmp) / "m.pt",
            device="cpu",
            progress=lambda f, msg: first or not msg.startswith("iteration") or first.append(time.perf_counter()),
        )
    print(
        json.dumps(
            {
                "photos": count,
                "megapixels": round(size[0] * size[1] / 1e6, 1),
                "seconds_to_first_iteration": round(first[0] - t0, 1),
                "peak_rss_mb": peak_rss_mb(),
            },
            indent=1,
        )
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--profile", type=int, default=0, metavar="N")
    p.add_argument("--set", action="append", default=[], help="key=value passed to train() (with --profile)")
    p.add_argument("--memory", nargs=2, type=float, metavar=("K", "MP"))
    args = p.parse_args(argv)
    if args.memory:
        memory(int(args.memory[0]), args.memory[1])
        return
    if args.profile:
        profile(args.profile, args.set)
        return
    train_set = [garden_scene(8_200_000 + i, kinds=KINDS) for i in range(args.scenes)]
    held_out = [garden_scene(8_300_000 + i, kinds=KINDS) for i in range(20)]
    names = ["__background__", *sorted(KINDS)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = gs.train(
            train_set, base="garden", iterations=args.iterations, output=Path(tmp) / "ft.pt", device="auto", lr=args.lr
        )
        seconds = time.perf_counter() - t0
        tuned = gs.load_model(path)
        base = gs.load_model("garden")
        out = {
            "train_scenes": args.scenes,
            "iterations": args.iterations,
            "train_seconds": round(seconds),
            "base_all_classes": score(base, held_out, names),
            "finetuned_all_classes": score(tuned, held_out, names),
            "base_succulent": score(base, held_out, names, only="succulent"),
            "finetuned_succulent": score(tuned, held_out, names, only="succulent"),
        }
    print(json.dumps({**out, "peak_rss_mb": peak_rss_mb()}, indent=1))


if __name__ == "__main__":
    main()
