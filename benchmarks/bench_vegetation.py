"""The plant mask's closing: ``dilate_disk`` (the disk's rows) against scipy's binary dilation and distance transform.

    python benchmarks/bench_vegetation.py                  # one real photo at 1.25, 12, 24 and 48 MP
    python benchmarks/bench_vegetation.py --megapixels 108

For each size: the closing radius (``_vegetation.closing_radius``: CLOSING of the geometric mean side),
the time of the closing's two disk dilations done three ways (best of 2): ``dilate_disk`` (the
union of the disk's rows, what the stage runs), scipy's binary dilation with the disk, and the
Euclidean distance transform thresholded at the radius; whether all give the same pixels; at the
end the peak RSS.
The photo is resized with Pillow, so plants grow with the image as they do in a sharper camera.
Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mb

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "real" / "photos" / "agir-cvtoolkit" / "maize_original.jpg"


def _closing(dilate, mask, radius):
    return ~dilate(~dilate(mask, radius), radius)


def _best(fn, *args, repeat=2):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    from PIL import Image
    from scipy import ndimage
    from skimage import morphology

    from napari_gardenseg._vegetation import closing_radius, dilate_disk, vegetation_map

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[1.25, 12, 24, 48])
    args = parser.parse_args()
    if not PHOTO.is_file():
        raise SystemExit(f"needs the shared photo {PHOTO}")
    photo = Image.open(PHOTO).convert("RGB")

    def by_dilation(x, r):
        return ndimage.binary_dilation(x, morphology.disk(r))

    def by_edt(x, r):
        return ndimage.distance_transform_edt(~x) <= r if x.any() else np.zeros(x.shape, bool)

    for mp in args.megapixels:
        w = round((mp * 1e6 * photo.width / photo.height) ** 0.5)
        h = round(w * photo.height / photo.width)
        mask = vegetation_map(np.asarray(photo.resize((w, h), Image.BICUBIC))).mask
        r = closing_radius((h, w))  # the image's rule: the largest radius the stage closes with
        t_rows, a = _best(_closing, dilate_disk, mask, r)
        t_dil, b = _best(_closing, by_dilation, mask, r)
        t_edt, c = _best(_closing, by_edt, mask, r)
        print(
            f"{mp:g} MP ({w}x{h}), radius {r}: dilate_disk {t_rows:.2f} s, binary dilation {t_dil:.2f} s, "
            f"distance transform {t_edt:.2f} s, same pixels: {np.array_equal(a, b) and np.array_equal(a, c)}",
            flush=True,
        )
    print(f"peak RSS {peak_rss_mb() / 1024:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
