"""What keeping an output layer's features true while painting costs (napari_gardenseg._paint_features).

    python benchmarks/bench_paint_features.py [--size 3000 4000] [--instances 300]

A Labels layer of ``--size`` pixels with ``--instances`` square instances and their features,
as the widget writes it, is edited the ways a user edits: a brush stroke (brush 40 px), a fill
of the whole background with a new id, and an undo of that fill. Each edit is timed with
napari's own work alone and with the features followed; the difference is this plugin's cost
on the GUI thread. Peak RSS is printed; after the run the features are checked against the
pixels (the Labels writer's table). No window: plain napari layer models.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _memory import peak_rss_mb


def _edits(layer) -> dict[str, float]:
    out = {}
    layer.brush_size = 40
    t = time.perf_counter()
    layer.paint((layer.data.shape[0] // 2, layer.data.shape[1] // 2), 5)
    out["brush stroke"] = time.perf_counter() - t
    t = time.perf_counter()
    layer.fill((0, 0), 99999)  # the background: most of the photo
    out["fill the background"] = time.perf_counter() - t
    t = time.perf_counter()
    layer.undo()
    layer.refresh()
    out["undo the fill"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(3000, 4000), metavar=("H", "W"))
    ap.add_argument("--instances", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from napari.layers import Labels

    from napari_gardenseg._label_writer import instances_table
    from napari_gardenseg._paint_features import follow_paint
    from napari_gardenseg._plane_run import instance_features

    h, w = args.size
    data = np.zeros((h, w), np.int32)
    rng = np.random.default_rng(0)
    side = max(4, int(np.sqrt(h * w / args.instances / 4)))
    for k in range(1, args.instances + 1):
        y, x = rng.integers(0, h - side), rng.integers(0, w - side)
        data[y : y + side, x : x + side] = k
    features = instance_features(instances_table(data))

    times: dict[str, dict[str, list]] = {"napari alone": {}, "features followed": {}}
    for _ in range(args.repeat):
        for mode in times:
            layer = Labels(data.copy(), features=features.copy())
            if mode == "features followed":
                follow_paint(layer)
            for name, secs in _edits(layer).items():
                times[mode].setdefault(name, []).append(secs)
    truth = instances_table(layer.data)
    agree = list(layer.features["label"]) == list(truth["label"]) and np.array_equal(
        layer.features["area"].to_numpy(), truth["area"].to_numpy()
    )
    print(f"{h} x {w} labels, {args.instances} instances; median of {args.repeat}")
    print(f"{'edit':<22}{'napari alone':>14}{'followed':>12}{'cost':>10}")
    for name in times["napari alone"]:
        a, b = (float(np.median(times[m][name])) for m in times)
        print(f"{name:<22}{a:>13.3f}s{b:>11.3f}s{b - a:>9.3f}s")
    print(f"features agree with the pixels after the edits: {agree}")
    print(f"peak RSS {peak_rss_mb()} MiB")


if __name__ == "__main__":
    main()
