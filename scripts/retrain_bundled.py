"""A candidate for the bundled garden model: ``adapt()`` on every permissively licensed real photo we have.

    nice -n 19 python scripts/retrain_bundled.py --minutes 70 --output runs/garden-adapted.pt

Recipe: start from the bundled ``garden`` model; photos = every image of
``../shared/real/photos`` (34 photos; sources and licences in its
MANIFEST.md: CC BY 4.0, MIT, MPL-2.0; mask, label and overlay files left out)
plus ``../shared/real/tray.jpg`` (PlantCV, MPL-2.0); no labels are used.
:func:`napari_gardenseg.adapt` harvests single plants where colour, model and
CRF agree, pastes them crowded onto the photos' own soil, pseudo-labels the
confident detections, and trains in rounds checked on held-back photos
(``--holdout``); a share of synthetic scenes (``--synthetic``, both styles of
:func:`~napari_gardenseg.synthetic.garden_scene`) stays in the mix so the
model keeps finding the synthetic sample's plants. A snapshot of every round
is written next to ``--output`` (``<stem>-round<N>.pt``), so a run stopped
early leaves a usable model; the report goes to ``<output>.json``.

The candidate is *not* copied over ``src/napari_gardenseg/models/garden.pt``:
evaluate it first (``benchmarks/eval_real.py --model ...``,
``benchmarks/eval_garden.py --model ...``). The photos include the labelled
real dev set's photos (seen without labels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
REAL = HERE.parent / "shared" / "real"
_NOT_PHOTOS = ("_mask", "_label", "WSeg")  # annotation files next to the photos
_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def real_photos(root: Path = REAL) -> list[Path]:
    """Every photo of ``root/photos`` (annotation files left out) and ``root/tray.jpg``, sorted."""
    found = [
        p
        for p in sorted((root / "photos").rglob("*"))
        if p.suffix.lower() in _SUFFIXES and not any(t in p.name for t in _NOT_PHOTOS)
    ]
    return found + [root / "tray.jpg"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=70)
    p.add_argument("--output", default="runs/garden-adapted.pt")
    p.add_argument("--base", default="garden")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--holdout", type=float, default=0.1)
    p.add_argument("--synthetic", type=float, default=0.35)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_gardenseg import adapt
    from napari_gardenseg._models import save_checkpoint

    photos = real_photos()
    print(f"{len(photos)} photos", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def progress(fraction, message):
        if "iteration" not in message or message.split("/")[0].endswith("0"):
            print(f"[{time.perf_counter() - t0:6.0f} s {100 * fraction:3.0f}%] {message}", flush=True)

    def snapshot(r, model):
        path = out.with_name(f"{out.stem}-round{r}.pt")
        save_checkpoint(model, path, overwrite=True)
        print(f"snapshot {path}", flush=True)

    path = adapt(
        photos,
        args.base,
        minutes=args.minutes,
        output=out,
        progress=progress,
        rounds=args.rounds,
        holdout=args.holdout,
        synthetic=args.synthetic,
        lr=args.lr,
        seed=args.seed,
        on_round=snapshot,
    )
    report = json.loads(path.with_suffix(".json").read_text())
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("plants_harvested", "rounds", "kept_round", "stopped", "iterations", "wall_seconds")
            },
            indent=1,
        )
    )
    print(f"saved {path}; command: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
