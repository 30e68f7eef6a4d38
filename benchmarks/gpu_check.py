"""One short check on a CUDA machine: the torch CRF against the CPU result, and the GPU's speed.

    python benchmarks/gpu_check.py                # about 3-5 minutes on one GPU (first CUDA call included)
    python benchmarks/gpu_check.py --skip-train   # CRF and pipeline only

1. Agreement: ``refine`` with backend "torch" on CUDA against the CPU's exact
   backend (numba, else pydensecrf, else torch on the CPU) on the four
   pydensecrf reference cases (% of pixels whose label matches pydensecrf's
   expected labels) and ``refine_masks`` on the 1024x768 garden scene (mean
   IoU per instance, % of pixels equal).
2. Pipeline: ``segment(..., crf=True, device="cuda")`` on a 12 MP image
   (4000x3000, bench_large.py's mosaic of garden scenes): total seconds, the
   network's and the CRF's (the "auto" backend, and the torch lattice on the
   GPU beside it), peak GPU memory.
3. Fine-tuning: 200 iterations of ``train`` on 5 photo-style scenes of
   1296x966 (as ``scripts/check_finetune.py --synthetic 5``), device "cuda".

Prints one JSON object per step. Exits with status 1 if no CUDA device is
present or the CRF's labels disagree (reference cases below 99.9 % of pixels).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _sync():
    import torch

    torch.cuda.synchronize()


def agreement() -> bool:
    from bench_crf import workload
    from test_crf import iou, reference_case

    import napari_gardenseg as gs
    from napari_gardenseg._instances import paint
    from napari_gardenseg.crf import CRFParams, refine, refine_masks
    from napari_gardenseg.crf._dense import choose_backend

    cpu_backend = choose_backend("auto", "cpu")[0]
    rows, ok = {}, True
    for case in ["1", "1-b", "2", "3"]:
        image, prob, expected = reference_case(case)
        labels = refine(image, prob, CRFParams(backend="torch"), device="cuda").argmax(0) + 1
        rows[f"case {case}"] = round(100 * float((labels == expected).mean()), 4)
        ok &= rows[f"case {case}"] >= 99.9
    image = workload("garden")
    model = gs.load_model("garden", device="cuda")
    inst = gs.segment(image, model, crf=False, keep_soft_masks=True).instances
    params = CRFParams.from_any(model.meta.get("crf"))
    a = paint(refine_masks(image, inst, replace(params, backend=cpu_backend)))
    b = paint(refine_masks(image, inst, replace(params, backend="torch"), device="cuda"))
    ious = [iou(a == k, b == k) for k in range(1, int(max(a.max(), b.max())) + 1) if (a == k).any() or (b == k).any()]
    print(
        json.dumps(
            {
                "step": "agreement",
                "cpu_backend": cpu_backend,
                "reference_pixels_equal_%": rows,
                "garden_mean_iou": round(float(np.mean(ious)), 4),
                "garden_pixels_equal_%": round(100 * float((a == b).mean()), 3),
            }
        )
    )
    return ok


def pipeline() -> None:
    import torch
    from bench_large import mosaic

    import napari_gardenseg as gs
    from napari_gardenseg._inference import predict_instances
    from napari_gardenseg.crf import refine_masks

    image = mosaic(3000, 4000)
    model = gs.load_model("garden", device="cuda")
    gs.segment(image[:1024, :1024], model, crf=True)  # warm-up: CUDA context, kernels
    torch.cuda.reset_peak_memory_stats()
    _sync()
    t0 = time.perf_counter()
    res = gs.segment(image, model, crf=True)
    _sync()
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_instances(model, gs.to_rgb_float(image))
    _sync()
    network = time.perf_counter() - t0
    found = gs.segment(image, model, crf=False, keep_soft_masks=True).instances
    crf = {}
    for backend in ("auto", "torch"):  # auto: numba on the CPU; torch: the lattice on the GPU
        _sync()
        t0 = time.perf_counter()
        refine_masks(image, found, replace(res.meta["crf_params"], backend=backend), device="cuda")
        _sync()
        crf[backend] = round(time.perf_counter() - t0, 2)
    print(
        json.dumps(
            {
                "step": "pipeline 4000x3000 (12 MP), crf on",
                "instances": len(res),
                "seconds": round(total, 2),
                "network_s": round(network, 2),
                "crf_s": crf["auto"],
                "crf_backend": res.meta.get("crf_backend"),
                "crf_torch_on_gpu_s": crf["torch"],
                "gpu_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20),
                "gpu": torch.cuda.get_device_name(0),
            }
        )
    )


def finetune(iterations: int) -> None:
    import napari_gardenseg as gs
    from napari_gardenseg.synthetic import garden_scene

    scenes = [garden_scene(s, shape=(966, 1296), style="photo") for s in range(8_600_000, 8_600_005)]
    samples = [(im, lab, "plant") for im, lab, _ in scenes]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = gs.train(samples, base="garden", iterations=iterations, output=Path(tmp) / "ft.pt", device="cuda")
        seconds = time.perf_counter() - t0
        meta = gs.load_model(path, device="cpu").meta["training"]
    print(
        json.dumps(
            {
                "step": f"fine-tuning, {iterations} iterations, 5 scenes 1296x966",
                "seconds": round(seconds, 1),
                "loss_first": round(float(np.mean(meta["loss_first"])), 3),
                "loss_last": round(float(np.mean(meta["loss_last"])), 3),
            }
        )
    )


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs one", file=sys.stderr)
        return 1
    ok = agreement()
    pipeline()
    if not args.skip_train:
        finetune(args.iterations)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
