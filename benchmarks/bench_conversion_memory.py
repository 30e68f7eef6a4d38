"""Peak memory of turning a 16-bit or float photo into what the network and the CRF read.

    python benchmarks/bench_conversion_memory.py                 # 12 MP RGB (3000 x 4000)
    python benchmarks/bench_conversion_memory.py --megapixels 48

For uint16 and float32 RGB arrays in memory: the peak of ``ImageSource(image).value_range()``
(the intensity range every window of a run is mapped with, taken band by band) and of
``to_rgb_uint8(image)`` (what ``refine``, ``refine_instances`` and pydensecrf read, converted a
few rows at a time), against rounding ``to_rgb_float(image) * 255`` (a float copy of the whole
photo), with their times and whether the values agree. Peaks are numpy's allocations above the
input (``tracemalloc``), not RSS. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def _measure(fn, *args):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=12.0)
    args = ap.parse_args()

    from napari_gardenseg._image_arrays import to_rgb_float, to_rgb_uint8
    from napari_gardenseg._image_source import ImageSource

    def whole_float_rounded(image):
        return np.clip(np.rint(to_rgb_float(image) * 255.0), 0, 255).astype(np.uint8)

    h = int(round(np.sqrt(args.megapixels * 1e6 * 3 / 4)))
    w = int(round(h * 4 / 3))
    rng = np.random.default_rng(0)
    images = {
        "uint16": rng.integers(0, 65535, (h, w, 3), dtype=np.uint16),
        "float32": rng.random((h, w, 3), dtype=np.float32),
    }
    print(f"{h} x {w} RGB ({h * w / 1e6:.1f} MP); peaks above the input, MiB (tracemalloc)")
    for name, image in images.items():
        _, s_range, p_range = _measure(lambda a: ImageSource(a).value_range(), image)
        new, s_new, p_new = _measure(to_rgb_uint8, image)
        old, s_old, p_old = _measure(whole_float_rounded, image)
        same = bool(np.array_equal(new, old))
        print(
            f"{name:8s} intensity range {p_range:6.0f} MiB {s_range:5.2f} s | to_rgb_uint8 {p_new:6.0f} MiB "
            f"{s_new:5.2f} s | whole float copy {p_old:6.0f} MiB {s_old:5.2f} s | same values: {same}"
        )


if __name__ == "__main__":
    main()
