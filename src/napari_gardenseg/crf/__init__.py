"""Dense-CRF refinement: pydensecrf's model, with numba, pydensecrf or PyTorch.

* ``_params``: :class:`CRFParams`, the one validator of CRF settings.
* ``_numba`` / ``_numba_lattice``: pydensecrf's lattice and mean field
  compiled by numba, bit for bit, crops on all cores (the CPU default).
* ``_lattice`` / ``_torch``: the permutohedral lattice and mean field in
  PyTorch (CPU, CUDA, MPS), batched over many crops; labels equal pydensecrf's.
* ``_pydensecrf``: the C++ reference (optional ``crf`` extra).
* ``_dense``: backend choice and :func:`refine` (whole image).
* ``_instances``: per-instance refinement of compact instances
  (:func:`refine_masks`) and its labels convenience (:func:`refine_instances`).
"""

from __future__ import annotations

from ._dense import refine, torch_available
from ._instances import refine_instances, refine_masks
from ._params import CRFParams
from ._pydensecrf import CRFUnavailableError

__all__ = ["CRFParams", "CRFUnavailableError", "crf_available", "refine", "refine_instances", "refine_masks"]


def crf_available() -> bool:
    """Returns True if a CRF backend can run here: numba, pydensecrf or PyTorch imports.

    Raises nothing: a backend that cannot be imported counts as absent.
    """
    from . import _numba, _pydensecrf

    return _numba.available() or torch_available() or _pydensecrf.available()
