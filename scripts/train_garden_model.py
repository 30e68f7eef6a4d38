"""Train the bundled garden model from scratch on synthetic scenes.

    python scripts/train_garden_model.py --iterations 6000 --output src/napari_gardenseg/models/garden.pt

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=6000)
    p.add_argument("--scenes", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--output", default="src/napari_gardenseg/models/garden.pt")
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

    path = train(
        samples, base=None, iterations=args.iterations, output=args.output, device="cpu",
        progress=progress, seed=args.seed, batch_size=args.batch_size, lr=args.lr, crop=args.crop,
        meta={"trained_on": f"synthetic garden scenes, seeds 0..{args.scenes - 1}, 512x512",
              "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "command": "python scripts/train_garden_model.py " + " ".join(sys.argv[1:])},
    )
    ck = torch.load(path, weights_only=True)
    print(json.dumps(ck["meta"]["training"], indent=1)[:2000])
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
