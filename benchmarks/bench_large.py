"""Time and peak memory of segmenting big images: a phone photo, a mosaic, a BigTIFF larger than memory.

    python benchmarks/bench_large.py photo            # 3888x2898 (11 MP), whole image, crf off and on
    python benchmarks/bench_large.py mosaic           # 8192x8192 tiled, against 2048x2048 tiled (per MP)
    python benchmarks/bench_large.py bigtiff --size 20000   # a 20000x20000 BigTIFF -> zarr labels

Every case runs in a fresh process so its peak RSS (ru_maxrss of that process,
everything included: torch, the model, the image, the outputs) is its own.
The images are synthetic garden scenes (``garden_scene``) tiled into a mosaic.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mb


def mosaic(h: int, w: int, block: int = 1024, seed: int = 9_100_000) -> np.ndarray:
    """An (h, w, 3) uint8 mosaic of garden scenes, each block a different seed."""
    from napari_gardenseg.synthetic import garden_scene

    out = np.empty((h, w, 3), np.uint8)
    k = 0
    for y in range(0, h, block):
        for x in range(0, w, block):
            bh, bw = min(block, h - y), min(block, w - x)
            out[y : y + bh, x : x + bw] = garden_scene(seed + k % 16, shape=(block, block), n_plants=(12, 20))[0][
                :bh, :bw
            ]
            k += 1
    return out


def peak_gb() -> float:
    return peak_rss_mb() / 1024


def case_photo(args) -> dict:
    import torch

    import napari_gardenseg as gs
    from napari_gardenseg._inference import predict_instances

    image = mosaic(2898, 3888)
    model = gs.load_model("garden", device="cpu")
    gs.segment(image[:512, :512], model, crf=args.crf)  # warm-up: first-call costs are not the image's
    t0 = time.perf_counter()
    res = gs.segment(image, model, crf=args.crf)
    total = time.perf_counter() - t0
    rgb = gs.to_rgb_float(image)
    t0 = time.perf_counter()
    predict_instances(model, rgb)
    forward = time.perf_counter() - t0
    crf = 0.0
    if args.crf:
        from napari_gardenseg._image_source import ImageSource
        from napari_gardenseg.crf import refine_masks

        found = gs.segment(image, model, crf=False, keep_soft_masks=True).instances
        t0 = time.perf_counter()
        refine_masks(ImageSource(image), found, res.meta["crf_params"], device="cpu")
        crf = time.perf_counter() - t0
    return {
        "case": f"photo 3888x2898 crf={args.crf}",
        "instances": len(res),
        "seconds": round(total, 2),
        "network_s": round(forward, 2),
        "crf_s": round(crf, 2),
        "ratio_to_network_plus_crf": round(total / (forward + crf), 2),
        "torch_threads": torch.get_num_threads(),
        "crf_backend": res.meta.get("crf_backend"),
        "peak_rss_gb": round(peak_gb(), 2),
    }


def case_tiled(args) -> dict:
    import napari_gardenseg as gs

    image = mosaic(args.size, args.size)
    model = gs.load_model("garden", device="cpu")
    gs.segment(image[:512, :512], model, crf=args.crf, scale=1.0)
    t0 = time.perf_counter()
    res = gs.segment(image, model, crf=args.crf, scale=1.0, tile_size=1024)
    seconds = time.perf_counter() - t0
    mp = args.size * args.size / 1e6
    return {
        "case": f"tiled {args.size}x{args.size} crf={args.crf}",
        "tiles": res.meta["tiles"],
        "instances": len(res),
        "seconds": round(seconds, 1),
        "s_per_mp": round(seconds / mp, 3),
        "peak_rss_gb": round(peak_gb(), 2),
    }


def case_bigtiff(args) -> dict:
    import tifffile

    import napari_gardenseg as gs

    work = Path(args.workdir)
    path = work / f"mosaic_{args.size}.tif"
    if not path.exists():
        block = 1024

        def tiles():
            for y in range(0, args.size, block):
                for x in range(0, args.size, block):
                    yield mosaic(block, block, seed=9_100_000 + (y // block * 7 + x // block) % 16)

        tifffile.imwrite(
            path,
            tiles(),
            shape=(args.size, args.size, 3),
            dtype=np.uint8,
            tile=(block, block),
            bigtiff=True,
            photometric="rgb",
        )
    out = work / f"mosaic_{args.size}_labels.zarr"
    t0 = time.perf_counter()
    res = gs.segment_to_zarr(path, out, "garden", crf=args.crf, scale=1.0, tile_size=1024, overwrite=True)
    seconds = time.perf_counter() - t0
    return {
        "case": f"BigTIFF {args.size}x{args.size} -> zarr crf={args.crf}",
        "tiles": res.meta["tiles"],
        "instances": len(res),
        "seconds": round(seconds, 1),
        "s_per_mp": round(seconds / (args.size**2 / 1e6), 3),
        "peak_rss_gb": round(peak_gb(), 2),
    }


def run_child(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"case {argv} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["photo", "mosaic", "bigtiff", "tiled"])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--crf", action="store_true")
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        case = {"photo": case_photo, "tiled": case_tiled, "bigtiff": case_bigtiff}[args.what]
        print(json.dumps(case(args)))
        return
    crf = ["--crf"] if args.crf else []
    if args.what == "photo":
        rows = [run_child(["photo"]), run_child(["photo", "--crf"])]
    elif args.what == "mosaic":
        small = run_child(["tiled", "--size", "2048", *crf])
        big = run_child(["tiled", "--size", str(args.size), *crf])
        big["s_per_mp_vs_2048"] = round(big["s_per_mp"] / small["s_per_mp"], 2)
        rows = [small, big]
    elif args.what == "bigtiff":
        rows = [run_child(["bigtiff", "--size", str(args.size), "--workdir", args.workdir, *crf])]
    else:
        rows = [run_child(["tiled", "--size", str(args.size), *crf])]
    print(f"cpu cores: {os.cpu_count()}")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
