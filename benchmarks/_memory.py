"""The peak memory every benchmark prints beside its figures."""

from __future__ import annotations

import resource


def peak_rss_mb() -> int:
    """Peak resident set size, MiB: the larger of this process's and of its finished children's
    (``getrusage``'s ``ru_maxrss``, KiB on Linux)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024)
