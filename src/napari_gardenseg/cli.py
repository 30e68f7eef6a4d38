"""Command line: segment image files in batches, without napari.

    gardenseg segment photo1.jpg photo2.png --model garden --out results/
    gardenseg segment --sample --out results/        # the bundled sample, offline
    gardenseg models                                 # what can be loaded here

Each input gives ``<stem>_labels.tif`` (raw instance ids), ``<stem>_labels_crf.tif``
(CRF-refined), ``<stem>_instances.csv`` (one row per instance),
``<stem>_overlay.png`` and, with ``--coco``, ``<stem>_coco.json``.

:func:`process_file` handles one file and returns a small summary dict, so a
batch can be spread over a Dask cluster with ``client.map(process_file, paths,
out_dir=..., model=...)``; each worker loads the model once (``load_model``
caches it per process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "process_file", "read_image", "overlay"]


def read_image(path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA") if im.mode in ("P", "LA") else im)


def overlay(image, labels, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 picture of ``labels`` over ``image``: a colour per instance, outlines in white."""
    from ._images import to_rgb_uint8

    rgb = to_rgb_uint8(image).astype(np.float32)
    n = int(labels.max())
    if n == 0:
        return rgb.astype(np.uint8)
    rng = np.random.default_rng(0)
    colours = np.vstack([[0, 0, 0], rng.uniform(40, 255, (n, 3))]).astype(np.float32)
    inside = labels > 0
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * colours[labels[inside]]
    edge = np.zeros_like(inside)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    rgb[edge & inside] = 255
    return rgb.astype(np.uint8)


def process_file(path, out_dir, model="garden", *, coco: bool = False, write_overlay: bool = True, **segment_kwargs) -> dict:
    """Segment one image file and write its outputs into ``out_dir``; return a summary."""
    import tifffile
    from PIL import Image

    from ._export import to_coco
    from ._inference import segment

    path = Path(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = read_image(path) if not isinstance(path, np.ndarray) else path
    t0 = time.perf_counter()
    result = segment(image, model, **segment_kwargs)
    seconds = time.perf_counter() - t0
    stem = path.stem
    written = []
    tifffile.imwrite(out / f"{stem}_labels.tif", result.labels, compression="zlib")
    written.append(f"{stem}_labels.tif")
    if result.refined is not None:
        tifffile.imwrite(out / f"{stem}_labels_crf.tif", result.refined, compression="zlib")
        written.append(f"{stem}_labels_crf.tif")
    result.table.to_csv(out / f"{stem}_instances.csv", index=False)
    written.append(f"{stem}_instances.csv")
    if write_overlay:
        shown = result.refined if result.refined is not None else result.labels
        Image.fromarray(overlay(image, shown)).save(out / f"{stem}_overlay.png")
        written.append(f"{stem}_overlay.png")
    if coco:
        (out / f"{stem}_coco.json").write_text(json.dumps(to_coco(result, file_name=path.name)))
        written.append(f"{stem}_coco.json")
    return {"file": str(path), "instances": len(result), "seconds": round(seconds, 2), "written": written}


def _sample_file() -> Path:
    from importlib import resources

    return Path(str(resources.files("napari_gardenseg") / "data" / "garden_sample.png"))


def _cmd_segment(args) -> int:
    from ._crf import CRFParams

    inputs = [Path(p) for p in args.inputs]
    if args.sample:
        inputs.append(_sample_file())
    if not inputs:
        print("gardenseg segment: give image files or --sample", file=sys.stderr)
        return 2
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        print(f"gardenseg segment: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    from ._models import load_model

    model = load_model(args.model, device=args.device)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    crf_params = None
    if args.crf_iterations is not None:
        stored = model.meta.get("crf") or {}
        crf_params = CRFParams(**{**stored, "iterations": args.crf_iterations})
    failures = 0
    for path in inputs:
        try:
            summary = process_file(
                path, args.out, model, coco=args.coco,
                score_threshold=args.score_threshold, mask_threshold=args.mask_threshold,
                classes=classes, crf=not args.no_crf, crf_params=crf_params,
            )
        except Exception as exc:  # one bad file must not stop a batch
            failures += 1
            print(f"{path}: FAILED: {exc}", file=sys.stderr)
            continue
        print(f"{path.name}: {summary['instances']} instances in {summary['seconds']} s -> {Path(args.out) / path.stem}_*")
    return 1 if failures else 0


def _cmd_models(args) -> int:
    from ._models import MODEL_TITLES, coco_weights_path

    for name, title in MODEL_TITLES.items():
        where = ""
        if name.startswith("coco"):
            p = coco_weights_path(name)
            where = f"  [{'cached' if p.exists() else 'not downloaded'}: {p}]"
        print(f"{name:8s} {title}{where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gardenseg", description="Mask R-CNN + dense-CRF instance segmentation")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("segment", help="segment image files (PNG, JPEG, TIFF)")
    s.add_argument("inputs", nargs="*", help="image files")
    s.add_argument("--sample", action="store_true", help="also segment the bundled sample image")
    s.add_argument("--model", default="garden", help="coco, coco-v1, garden or a checkpoint path (default: garden)")
    s.add_argument("--out", default="gardenseg-out", help="output folder (default: gardenseg-out)")
    s.add_argument("--device", default="auto")
    s.add_argument("--score-threshold", type=float, default=0.5)
    s.add_argument("--mask-threshold", type=float, default=0.5)
    s.add_argument("--classes", help="comma-separated class names to keep (default: all)")
    s.add_argument("--no-crf", action="store_true", help="skip the dense-CRF refinement")
    s.add_argument("--crf-iterations", type=int, help="mean-field iterations (default: the model's setting)")
    s.add_argument("--coco", action="store_true", help="also write COCO JSON")
    s.set_defaults(func=_cmd_segment)
    m = sub.add_parser("models", help="list the models and whether their weights are here")
    m.set_defaults(func=_cmd_models)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, FileNotFoundError) as exc:
        print(f"gardenseg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
