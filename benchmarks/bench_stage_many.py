"""The colour stage's memory and time with thousands of instances (a tray or field seen whole, or
a tiled run: up to 300 detections a tile).

    python benchmarks/bench_stage_many.py                 # 1, 4, 9 and 16 MP
    python benchmarks/bench_stage_many.py 6000            # one 6000 x 6000 image

Each image is soil with a grid of round green plants, 40 px apart, one detection each (so as many
plant-coloured components as instances), and runs ``follow_vegetation`` alone. Prints, per size,
the instances, the stage's peak of Python-allocated memory (tracemalloc: numpy's arrays; what the
stage adds on top of the image and its vegetation map), one int64 image-sized map for scale, and
the time. The stage's promise is a few image-sized maps, never one per instance nor an
instances x components table. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from napari_gardenseg._instances import Instances
from napari_gardenseg._plant_pixels import follow_vegetation
from napari_gardenseg._vegetation import vegetation_map


def grid_of_plants(side: int, spacing: int = 40, radius: int = 12):
    """(detections, vegetation map) of a ``side`` x ``side`` soil image with a grid of round plants."""
    rgb = np.full((side, side, 3), (0.45, 0.35, 0.25), np.float32)
    rgb += np.random.default_rng(0).normal(0, 0.02, rgb.shape).astype(np.float32)
    yy, xx = np.mgrid[-radius - 1 : radius + 2, -radius - 1 : radius + 2]
    disc = (yy**2 + xx**2) <= radius * radius
    masks, offsets, boxes = [], [], []
    for cy in range(spacing // 2, side - radius - 2, spacing):
        for cx in range(spacing // 2, side - radius - 2, spacing):
            y0, x0 = cy - radius - 1, cx - radius - 1
            rgb[y0 : y0 + disc.shape[0], x0 : x0 + disc.shape[1]][disc] = (0.2, 0.6, 0.15)
            masks.append(np.where(disc, 0.9, 0.05).astype(np.float32))
            offsets.append((y0, x0))
            boxes.append((x0, y0, x0 + disc.shape[1], y0 + disc.shape[0]))
    n = len(masks)
    found = Instances(masks, offsets, np.linspace(0.9, 0.6, n), np.ones(n), boxes, (side, side))
    vmap = vegetation_map(np.clip(rgb, 0, 1))
    _ = vmap.plants  # computed before the measurement: the stage's own cost is what is measured
    return found, vmap


def main(sides) -> int:
    print("image | instances | out | stage peak (tracemalloc) | one int64 map | seconds")
    for side in sides:
        found, vmap = grid_of_plants(side)
        tracemalloc.start()
        t0 = time.perf_counter()
        out = follow_vegetation(found, vmap, 0.5)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"{side} x {side} ({side * side / 1e6:.0f} MP) | {len(found)} | {len(out)} | {peak / 1e6:.0f} MB | "
            f"{side * side * 8 / 1e6:.0f} MB | {seconds:.1f}"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sides", nargs="*", type=int, default=[1000, 2000, 3000, 4000], help="image sides, pixels")
    raise SystemExit(main(parser.parse_args().sides))
