"""Time and peak memory of reading a big JPEG photo: whole, and without its end marker (EOI).

    python benchmarks/bench_read_photo.py                  # 48 MP (8000 x 6000)
    python benchmarks/bench_read_photo.py --megapixels 12

Each read runs in a fresh process, so its peak RSS (``ru_maxrss``: Python, numpy, Pillow, the
file's bytes, the decoded photo and the array) is its own. The photo's pixels are an upscaled
noise field (about what a JPEG of foliage costs to decode). A photo's RGB array is 3 bytes a
pixel; Pillow holds a decoded one at 4. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

_READ = """
import resource, sys, time
from napari_gardenseg._image_reader import read_image
t = time.perf_counter()
f = read_image(sys.argv[1])
print(f"{time.perf_counter() - t:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {f.data.shape}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=48.0)
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    w = int(round((args.megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(args.megapixels * 1e6 / w))
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "whole.jpg"
        noise = np.random.default_rng(0).integers(0, 256, (h // 10, w // 10, 3), dtype=np.uint8)
        Image.fromarray(noise).resize((w, h), Image.BILINEAR).save(whole, quality=90)
        no_end = Path(tmp) / "no_end.jpg"
        no_end.write_bytes(whole.read_bytes()[:-2])
        print(f"{w} x {h} JPEG ({whole.stat().st_size / 2**20:.1f} MiB); RGB array {w * h * 3 / 2**20:.0f} MiB")
        for name, path in (("whole", whole), ("no end marker", no_end)):
            out = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, check=True)
            seconds, peak, shape = out.stdout.strip().split(" ", 2)
            print(f"  {name:14s} {seconds:>6s} s   peak RSS {peak:>5s} MiB   {shape}")


if __name__ == "__main__":
    main()
