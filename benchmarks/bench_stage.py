"""What the vegetation stage costs per photo: ``segment(..., crf=False)`` with ``vegetation="auto"`` against "off".

    python benchmarks/bench_stage.py            # six real photos of ../shared/real, each resized to 1.25 MP
    python benchmarks/bench_stage.py --megapixels 12 48 108   # the first photo at phone-camera sizes
    python benchmarks/bench_stage.py --megapixels 48 --zarr   # through segment_to_zarr (stage window by window)
    python benchmarks/bench_stage.py --megapixels 12 48 --crf  # with the dense CRF (segment's default)

The issue's target is time per photo at most 1.5x the time without the stage, on field photos
of about 1.25 MP. Each photo: one warm-up run, then 3 interleaved off/auto runs; medians. Prints
one line per photo (times, ratio, whether the stage ran) and the totals with the peak RSS of
the process. With ``--megapixels`` the first photo is resized to each size (ascending) and run
once each way, from a JPEG file as a phone gives it; the peak RSS printed after each run is the
process's so far, so the largest size's is its own ("off" runs first: a rise at "auto" is the
stage's). ``--zarr`` writes the labels into a zarr store chunk by chunk (tiled at native
resolution, the stage window by window). Measure on a quiet machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mb

SHARED = Path(__file__).resolve().parents[2] / "shared" / "real" / "photos"
PHOTOS = (
    "agir-cvtoolkit/maize_original.jpg",
    "agir-cvtoolkit/upland_cotton_original.jpg",
    "agir-cvtoolkit/horseweed_original.jpg",
    "weed-ai/cobbity_wheat_image-3.jpg",
    "weed-ai/resizeC1_PLOT_20190728_175852.jpg",
    "plantcv-tutorial-arabidopsis-tray/arabidopsis_tray.jpg",
)


def main() -> int:
    import argparse

    from PIL import Image

    import napari_gardenseg as gs
    from napari_gardenseg._image_reader import read_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", help="the first photo at these sizes instead")
    parser.add_argument("--zarr", action="store_true", help="with --megapixels: run gs.segment_to_zarr")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF too (off by default)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared photos at {SHARED}")
    model = gs.load_model("garden", device="cpu")
    if args.megapixels:
        return _phone_sizes(gs, model, args.megapixels, args.zarr, args.crf)
    total = {"off": 0.0, "auto": 0.0}
    for name in PHOTOS:
        rgb = np.asarray(read_image(str(SHARED / name)).data)[..., :3]
        h, w = rgb.shape[:2]
        f = (1.25e6 / (h * w)) ** 0.5
        rgb = np.asarray(Image.fromarray(rgb).resize((round(w * f), round(h * f)), Image.BILINEAR))
        gs.segment(rgb, model, score_threshold=0.05, crf=args.crf)
        times = {"off": [], "auto": []}
        for _ in range(3):
            for mode in times:
                t0 = time.perf_counter()
                r = gs.segment(rgb, model, score_threshold=0.05, crf=args.crf, vegetation=mode)
                times[mode].append(time.perf_counter() - t0)
        med = {m: statistics.median(t) for m, t in times.items()}
        for m in med:
            total[m] += med[m]
        ran = r.meta.get("vegetation", {}).get("applied")
        print(
            f"{name} {rgb.shape[1]}x{rgb.shape[0]}: off {med['off']:.2f} s, auto {med['auto']:.2f} s "
            f"({med['auto'] / med['off']:.2f}x), stage ran: {ran}",
            flush=True,
        )
    peak = peak_rss_mb() / 1024
    print(
        f"total: off {total['off']:.2f} s, auto {total['auto']:.2f} s ({total['auto'] / total['off']:.2f}x); "
        f"peak RSS {peak:.2f} GB"
    )
    return 0


def _phone_sizes(gs, model, megapixels, to_zarr=False, crf=False) -> int:
    import tempfile

    from PIL import Image

    photo = Image.open(SHARED / PHOTOS[0]).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in sorted(megapixels):
            w = round((mp * 1e6 * photo.width / photo.height) ** 0.5)
            h = round(w * photo.height / photo.width)
            path = Path(tmp) / f"photo_{mp:g}mp.jpg"
            photo.resize((w, h), Image.BICUBIC).save(path, quality=90)
            line = []
            for mode in ("off", "auto"):
                t0 = time.perf_counter()
                if to_zarr:
                    out = Path(tmp) / f"labels_{mp:g}_{mode}.zarr"
                    r = gs.segment_to_zarr(path, out, model, score_threshold=0.05, crf=crf, vegetation=mode)
                else:
                    r = gs.segment(path, model, score_threshold=0.05, crf=crf, vegetation=mode)
                peak = peak_rss_mb() / 1024
                line.append(
                    f"{mode} {time.perf_counter() - t0:.1f} s, {len(r)} instances, peak RSS so far {peak:.2f} GB"
                )
            veg = r.meta.get("vegetation", {})
            print(
                f"{mp:g} MP ({w}x{h}): {'; '.join(line)}; stage ran: {veg.get('applied')}"
                + (f" in {veg['windows']} windows" if "windows" in veg else ""),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
