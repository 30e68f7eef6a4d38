"""What the windowed colour stage's stitch costs, and what diagonal crop rows hold in memory.

    python benchmarks/bench_stitch.py             # the stitch alone: S seeds and P colour pieces on a 20000² image
    python benchmarks/bench_stitch.py --rows 8000 # 12 diagonal crop rows on soil, 8000², whole-image and windowed

The first part times ``_vegetation_windows._stitched`` (the step that joins the windows' pieces
into one image's instances) with S model instances kept whole and P colour-only pieces, 10 x 10
px each, scattered over a 20000 x 20000 image: the case of a big orthomosaic's weeds. ``--rows N``
runs the colour stage on an N x N soil image with 12 plant-coloured rows at 45 degrees and no
detection, first whole (``follow_vegetation``) then window by window (``follow_in_windows``), and
prints the instances, the megabytes their masks hold and whether both runs gave the same pieces.
Each line ends with the process's peak RSS so far. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _memory import peak_rss_mb


def stitch(sizes=((1000, 1000), (5000, 5000), (20000, 20000)), n: int = 20000) -> None:
    from napari_gardenseg import _vegetation_windows as vw

    class Found:  # only the shape and the count are read
        def __init__(self, count):
            self.shape, self.count = (n, n), count

        def __len__(self):
            return self.count

    mask = np.full((10, 10), 0.9, np.float32)
    for seeds, pieces in sizes:
        rng = np.random.default_rng(0)
        kept = {
            g: ((mask, int(y), int(x)), 0.9, 1, np.array([x, y, x + 9, y + 9], np.float32), True)
            for g, (y, x) in enumerate(rng.integers(0, n - 10, (seeds, 2)))
        }
        colour = [((mask, int(y), int(x)), 0.4) for y, x in rng.integers(0, n - 10, (pieces, 2))]
        t = time.perf_counter()
        out = vw._stitched(Found(seeds), kept, {}, colour, {}, 0.5, 0.05)
        print(
            f"stitch: {seeds} seeds, {pieces} colour pieces -> {len(out)} instances in "
            f"{time.perf_counter() - t:.2f} s; peak RSS {peak_rss_mb():.0f} MB",
            flush=True,
        )


def diagonal_rows(side: int) -> None:
    from napari_gardenseg._image_source import ImageSource
    from napari_gardenseg._instances import Instances, paint_image
    from napari_gardenseg._plant_pixels import follow_vegetation
    from napari_gardenseg._vegetation import colour_classes
    from napari_gardenseg._vegetation_windows import follow_in_windows

    rng = np.random.default_rng(0)
    image = np.empty((side, side, 3), np.uint8)
    image[:] = (125, 95, 65)
    image += rng.integers(0, 12, (side, side, 3), dtype=np.uint8)
    yy, xx = np.ogrid[:side, :side]
    for k in range(12):
        image[np.abs((xx - yy) - ((k + 0.5) * 2 * side / 12 - side / 2)) < 10] = (60, 140, 40)
    rgb = image.astype(np.float32) / 255
    classes = colour_classes(rgb)
    found = Instances.empty((side, side))
    labels = {}
    for name in ("whole", "windows"):
        t = time.perf_counter()
        if name == "whole":
            out = follow_vegetation(found, classes.map(rgb))
        else:
            out = follow_in_windows(found, ImageSource(image), classes)[0]
        held = sum(m.nbytes for m in out.masks) / 1e6
        labels[name] = paint_image(out)
        print(
            f"{side}² diagonal rows, {name}: {len(out)} instances, masks {held:.0f} MB for "
            f"{np.count_nonzero(labels[name]) / 1e6:.2f} M plant pixels, {time.perf_counter() - t:.1f} s; "
            f"peak RSS {peak_rss_mb():.0f} MB",
            flush=True,
        )
    pairs = np.unique(np.stack([labels["whole"].ravel(), labels["windows"].ravel()]), axis=1)
    print(f"the same pieces in both: {len(pairs[0]) == len(np.unique(labels['whole']))}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, metavar="N", help="the diagonal-rows case at N x N instead")
    args = parser.parse_args(argv)
    if args.rows:
        diagonal_rows(args.rows)
    else:
        stitch()


if __name__ == "__main__":
    main()
