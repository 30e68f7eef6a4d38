"""What leaving the caller's model as it was costs (issue 15: nothing the caller owns is changed).

``segment(image, net)`` with the caller's own module runs it in eval mode for each forward pass
and restores every submodule's ``training`` flag after (napari_gardenseg._forward._eval_mode);
a module on another device than the one asked for is copied once per call. Prints the time of
the mode switch and restore per pass and of the copy, for the bundled model and torchvision's
COCO v2 architecture (no weights downloaded), next to one whole segment() call.

    python benchmarks/bench_caller_model.py
"""

from __future__ import annotations

import copy
import time

import torch


def _per_pass_us(net, repeat=200) -> float:
    from napari_gardenseg._forward import _eval_mode

    t = time.perf_counter()
    for _ in range(repeat):
        with _eval_mode(net):
            pass
    return (time.perf_counter() - t) / repeat * 1e6


def main() -> None:
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    from napari_gardenseg import segment
    from napari_gardenseg._models import load_model
    from napari_gardenseg.synthetic import garden_scene

    torch.set_num_threads(1)
    garden = copy.deepcopy(load_model("garden").net).train()
    coco = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).train()
    for name, net in (("garden", garden), ("coco v2 architecture", coco)):
        n = sum(1 for _ in net.modules())
        params = sum(p.numel() for p in net.parameters()) / 1e6
        t = time.perf_counter()
        copy.deepcopy(net)
        copied = (time.perf_counter() - t) * 1e3
        print(
            f"{name}: {n} modules, {params:.1f} M parameters; eval mode + restore per pass "
            f"{_per_pass_us(net):.0f} us; copy (another device asked for) {copied:.0f} ms"
        )
    image = garden_scene(8_000_123, shape=(256, 256))[0]
    segment(image, garden, crf=False)
    t = time.perf_counter()
    segment(image, garden, crf=False)
    print(
        f"one segment() of a 256 x 256 image with the garden module, CRF off: {(time.perf_counter() - t) * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
