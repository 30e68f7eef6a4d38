"""The one device resolver: the model, the dense CRF and training all ask it.

A device asked for by name but missing here (CUDA on a machine without an
NVIDIA driver, MPS off a Mac) gets the same one-line message on every path,
never torch's own error from deep inside a run.
"""

from __future__ import annotations

__all__ = ["DeviceError", "resolve_device", "available_devices", "with_memory_advice"]

_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device"


class DeviceError(ValueError):
    """A device that is unknown or not available on this machine (a ValueError).

    Raised by :func:`resolve_device`, so by every function that takes a ``device``
    (``load_model``, ``segment``, the CRF, training) when it resolves it.
    """


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device="auto"):
    """Returns the ``torch.device`` for ``device``: ``"auto"`` (or None) picks CUDA, then Apple's MPS, then the CPU.

    ``device``: ``"auto"``, None, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
    ``torch.device`` of those types.

    Raises :class:`DeviceError` for an unknown name or another device type (torch's
    "meta", "xla"..., which the network and the CRF do not run on), for "cuda"/"mps"
    when that device is not available here, or for a "cuda:N" beyond the GPUs present.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device must be {_CHOICES}, got {device!r} (unknown device)") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device must be {_CHOICES}, got {device!r} (not a device this plugin runs on)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise DeviceError(
            f"device {device!r} was asked for but this machine has {n} GPU{'s' if n != 1 else ''} "
            f"(cuda:0{f' to cuda:{n - 1}' if n > 1 else ''}); use 'cuda' or 'auto'"
        )
    if dev.type == "mps" and not _mps_available():
        raise DeviceError(f"device {device!r} was asked for but Apple MPS is not available here; use 'cpu' or 'auto'")
    return dev


def available_devices() -> list[str]:
    """The device choices that work here: "auto", "cpu", then "cuda" / "mps" when present."""
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    if _mps_available():
        out.append("mps")
    return out


def with_memory_advice(exc: BaseException) -> str | None:
    """``exc``'s message with what to do, when it says memory ran out; None for other errors.

    GPU: torch's ``OutOfMemoryError`` (CUDA, and MPS's "out of memory"). Host:
    ``MemoryError`` (numpy's "Unable to allocate ...") and torch's CPU
    allocator ("can't allocate memory").
    """
    text = str(exc) or type(exc).__name__
    first = text.splitlines()[0]
    if type(exc).__name__ == "OutOfMemoryError" or "MPS backend out of memory" in text:
        return (
            f"the GPU ran out of memory ({first[:120]}): choose the device 'cpu', or segment in tiles (tile size 512)"
        )
    if isinstance(exc, MemoryError) or "can't allocate memory" in text:
        return (
            f"not enough memory for this image ({first[:120]}): close other programs, or write the labels into "
            "a zarr store with gs.segment_to_zarr, which holds a window of the image at a time "
            "(`gardenseg segment` does so for TIFFs over 256 MB and zarr stores)"
        )
    return None
