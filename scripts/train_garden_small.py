"""Train the garden_small model (the bundled "garden" until a garden_mobilenet one ships) from scratch.

    # stage 1: from scratch, 28x28 masks
    python scripts/train_garden_small.py --iterations 4000 --scenes 500 --output runs/garden-stage1.pt
    # stage 2: the same network with a 56x56 mask head (thin blades), from stage 1
    python scripts/train_garden_small.py --init runs/garden-stage1.pt --mask-roi-size 28 \
        --iterations 2400 --lr 5e-4 --scenes 500 --output runs/garden.pt

Deterministic for a given --seed (on the CPU). Training scenes use seeds
0..--scenes-1; seeds 9,000,000 and up are never used here (evaluation only).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from napari_gardenseg._training import train
from napari_gardenseg.synthetic import EVAL_SEED_START, garden_scene


def _base_model(init, mask_roi_size):
    """The garden architecture with the chosen mask resolution, holding ``init``'s weights."""
    from napari_gardenseg._architectures import garden_small
    from napari_gardenseg._models import Model, load_model
    from napari_gardenseg.synthetic import CLASS_NAMES

    names = ["__background__", *sorted(CLASS_NAMES)]
    kwargs = {"mask_roi_size": mask_roi_size}
    net = garden_small(len(names), **kwargs)
    source = "scratch"
    if init:
        start = load_model(init, device="cpu")
        assert start.class_names == names, start.class_names
        net.load_state_dict(start.net.state_dict())
        source = str(init)
    return Model(net, names, torch.device("cpu"), source=source, arch="garden_small", arch_kwargs=kwargs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=6000)
    p.add_argument("--scenes", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--init", help="start from this checkpoint instead of from scratch")
    p.add_argument("--mask-roi-size", type=int, default=14, help="14: 28x28 masks, 28: 56x56 masks")
    p.add_argument("--output", default="runs/garden.pt")
    args = p.parse_args(argv)
    assert args.scenes < EVAL_SEED_START
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    samples = [garden_scene(s) for s in range(args.scenes)]
    print(f"generated {len(samples)} scenes in {time.perf_counter() - t0:.0f} s", flush=True)
    start = time.perf_counter()

    def progress(fraction, message):
        it = round(fraction * args.iterations)
        if it % 50 == 0 or it == args.iterations:
            print(f"[{time.perf_counter() - start:7.0f} s] {message}", flush=True)

    base = None
    if args.init or args.mask_roi_size != 14:
        base = _base_model(args.init, args.mask_roi_size)
    path = train(
        samples,
        base=base,
        iterations=args.iterations,
        output=args.output,
        device="cpu",
        progress=progress,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        crop=args.crop,
        meta={
            "trained_on": f"synthetic garden scenes, seeds 0..{args.scenes - 1}, 512x512",
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
            "command": "python scripts/train_garden_small.py " + " ".join(sys.argv[1:]),
        },
    )
    ck = torch.load(path, weights_only=True)
    print(json.dumps(ck["meta"]["training"], indent=1)[:2000])
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
