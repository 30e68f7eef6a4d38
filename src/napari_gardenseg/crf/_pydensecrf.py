"""The pydensecrf backend: the C++ reference implementation (optional ``crf`` extra)."""

from __future__ import annotations

import numpy as np

MISSING = (
    "the pydensecrf CRF backend needs pydensecrf, which is not installed: "
    '`pip install pydensecrf2` (or `pip install "napari-gardenseg[crf]"`; it compiles '
    "C++, so it needs a compiler). The built-in torch backend needs nothing more: "
    "use backend='torch' or 'auto' in CRFParams, or run with crf=False."
)


class CRFUnavailableError(ImportError):
    """The CRF backend asked for cannot be imported (an ImportError saying what to install).

    Raised when the CRF runs with ``CRFParams.backend`` "numba", "pydensecrf" or "torch"
    and that package cannot be imported, or with "auto" when none of them can.
    """

    def __init__(self, message: str = MISSING):
        super().__init__(message)


def densecrf():
    """The ``pydensecrf.densecrf`` module; CRFUnavailableError if it is missing."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise CRFUnavailableError(MISSING) from err
    return dcrf


def available() -> bool:
    try:
        densecrf()
    except CRFUnavailableError:
        return False
    return True


def dense_crf(rgb: np.ndarray, unary: np.ndarray, iterations: int, gaussian: tuple, bilateral: tuple) -> np.ndarray:
    """Mean-field Q (K, H, W) float32 for a (K, H*W) float32 unary over uint8 ``rgb``.

    ``gaussian`` = (sxy, compat), ``bilateral`` = (sxy, srgb, compat); a kernel
    with compat 0 is left out.
    """
    dcrf = densecrf()
    h, w = rgb.shape[:2]
    crf = dcrf.DenseCRF2D(w, h, unary.shape[0])
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    if gaussian[1] > 0:
        crf.addPairwiseGaussian(sxy=gaussian[0], compat=gaussian[1])
    if bilateral[2] > 0:
        crf.addPairwiseBilateral(
            sxy=bilateral[0],
            srgb=bilateral[1],
            rgbim=np.array(rgb, dtype=np.uint8, order="C"),  # pydensecrf needs a writable C-contiguous buffer
            compat=bilateral[2],
        )
    q = np.asarray(crf.inference(iterations), dtype=np.float32)
    return q.reshape(unary.shape[0], h, w)
