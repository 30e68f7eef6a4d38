"""Does fine-tuning on a handful of labelled scenes teach the garden model a new plant?

    python benchmarks/bench_finetune.py [--iterations 300] [--scenes 8]

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    args = p.parse_args(argv)
    train_set = [garden_scene(8_200_000 + i, kinds=KINDS) for i in range(args.scenes)]
    held_out = [garden_scene(8_300_000 + i, kinds=KINDS) for i in range(20)]
    names = ["__background__", *sorted(KINDS)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = gs.train(train_set, base="garden", iterations=args.iterations, output=Path(tmp) / "ft.pt",
                        device="auto", lr=args.lr)
        seconds = time.perf_counter() - t0
        tuned = gs.load_model(path)
        base = gs.load_model("garden")
        out = {
            "train_scenes": args.scenes, "iterations": args.iterations, "train_seconds": round(seconds),
            "base_all_classes": score(base, held_out, names),
            "finetuned_all_classes": score(tuned, held_out, names),
            "base_succulent": score(base, held_out, names, only="succulent"),
            "finetuned_succulent": score(tuned, held_out, names, only="succulent"),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
