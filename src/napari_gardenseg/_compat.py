"""Work-arounds for the platforms and library versions napari runs on (no torch, no Qt imports here)."""

from __future__ import annotations

import functools


def avoid_triton_llvm_clash() -> None:
    """Keep torch from importing triton into a process whose OpenGL is Mesa's.

    triton's extension carries its own LLVM; loading it into a process that
    already mapped Mesa's libLLVM (llvmpipe/swrast: Xvfb, VMs, machines
    without a GPU driver) segfaults. torchvision imports torch._dynamo, which
    imports triton when installed, so the first torch import after napari
    has made its canvas would crash napari. Inference does not need triton:
    when libLLVM is already mapped and triton is not loaded yet, mark it
    missing (``sys.modules["triton"] = None``, which torch reads as "not
    installed"). Anywhere else this does nothing.
    """
    import sys

    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/maps") as fh:
            mapped = fh.read()
    except OSError:
        return
    if "libLLVM" in mapped:
        sys.modules["triton"] = None


@functools.cache
def _skimage_takes_max_size() -> bool:
    import inspect

    from skimage import morphology

    return "max_size" in inspect.signature(morphology.remove_small_objects).parameters


def remove_small_objects(mask, max_size: int):
    """bool mask without its connected objects (skimage's default connectivity) of at most ``max_size`` pixels.

    scikit-image 0.26 renamed ``min_size`` to ``max_size`` (objects up to it go, where
    ``min_size`` removed those below it); napari allows older scikit-image, so both are served.
    """
    from skimage import morphology

    if _skimage_takes_max_size():
        return morphology.remove_small_objects(mask, max_size=max_size)
    return morphology.remove_small_objects(mask, min_size=max_size + 1)


def remove_small_holes(mask, max_size: int):
    """bool mask with its holes of at most ``max_size`` pixels filled (``area_threshold`` before scikit-image 0.26)."""
    from skimage import morphology

    if _skimage_takes_max_size():
        return morphology.remove_small_holes(mask, max_size=max_size)
    return morphology.remove_small_holes(mask, area_threshold=max_size + 1)
