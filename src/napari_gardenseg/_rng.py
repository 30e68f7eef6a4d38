"""Torch's global random generators, kept as the caller had them around a run that seeds them."""

from __future__ import annotations

import functools


def keeps_global_rng(run):
    """``run`` (training, adapting: each seeds torch so that a run repeats) with torch's global
    random generators given back as the caller had them: seeded for good, every later
    ``torch.rand`` of the caller's session gave the same numbers. The generators of CUDA devices
    already in use are kept too (:func:`torch.random.fork_rng`); one that the run itself starts
    is left seeded."""

    @functools.wraps(run)
    def with_rng_kept(*args, **kwargs):
        import torch

        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            return run(*args, **kwargs)

    return with_rng_kept
