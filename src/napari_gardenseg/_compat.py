"""Work-arounds for the platforms napari runs on (no torch, no Qt imports here)."""

from __future__ import annotations


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
