"""The permutohedral lattice (Adams, Baek & Davis 2010) in plain PyTorch.

It follows pydensecrf's ``permutohedral.cpp`` (the SSE code path that x86
builds run) step by step, in float32 like it: features are elevated onto the
hyperplane with the same scale factors, rounded to the nearest remainder-0
lattice point (round half to even, as SSE does), ranked, given barycentric
weights, splatted onto the d+1 vertices of their simplex, blurred with
(1/2, 1, 1/2) along each of the d+1 lattice directions (a missing neighbour
counts as 0) and sliced back with pydensecrf's ``alpha = 1 / (1 + 2^-d)``.

Instead of a hash table, keys are packed into one int64 (mixed radix over
their range) and numbered by stable sorts: first each point's simplex (its
remainder-0 point and rank order), then the simplices' vertices; blur
neighbours are found with ``searchsorted``. The splat is two sparse (CSR) sums, points ->
simplex corners -> vertices, each blur direction a sparse product, and the
slice a row gather and a sparse product: few, large operations. Points carry a segment id that is part of the key, so
many crops share one lattice build and one blur without their vertices ever
meeting: the result per crop is that of a lattice of its own. The structure
is built once and reused for every filtering (every mean-field iteration).

Where the result can differ from pydensecrf's, and why:

* float order: the splat adds a vertex's terms per simplex first
  (pydensecrf: in pixel order), the blur adds old + n1/2 + n2/2 (pydensecrf:
  old + (n1 + n2)/2), the slice adds a point's d+1 terms in another order and
  multiplies by alpha first for one or two labels, and the mean field's
  ``exp`` comes from another maths library. Marginals differ by about 1e-6;
  a label changes only where two labels' marginals are that close.
* lattice rounding: a feature exactly half-way between two remainder-0
  points is rounded half to even here, as pydensecrf's SSE path (x86)
  does; its plain C++ path (e.g. ARM builds) compares ceil and floor instead
  and can pick the other point, so against such a build those few points
  (and their neighbours' messages) can differ.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

_MAX_BITS = 62  # packed keys must fit a signed int64


class KeysTooWide(ValueError):
    """The lattice keys of these points do not fit one int64 (split the crops)."""


def _csr(crow, col, val, size):
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, val, size=size, check_invariants=False)


class Lattice:
    """A lattice built over ``features`` (N, d) float32, one per ``segments`` id.

    ``sparse``: filter with sparse matrix products (default on CPU and CUDA)
    or with gathers and ``index_add_`` (default elsewhere, e.g. MPS).
    """

    def __init__(self, features: torch.Tensor, segments: torch.Tensor | None = None, sparse: bool | None = None):
        if features.dtype != torch.float32 or features.ndim != 2:
            raise ValueError("lattice features must be a float32 (N, d) tensor")
        device = features.device
        n, d = features.shape
        d1 = d + 1
        self.n, self.d = n, d
        i64 = torch.int64

        # Elevate (E p, p.5 of Adams et al.), in float32 with pydensecrf's constants.
        inv_std = float(np.float32(math.sqrt(2.0 / 3.0) * d1))
        scale = [float(np.float32(1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std)) for i in range(d)]
        elevated = [None] * d1
        sm = torch.zeros(n, dtype=torch.float32, device=device)
        for j in range(d, 0, -1):
            cf = features[:, j - 1] * scale[j - 1]
            elevated[j] = sm - float(j) * cf
            sm = sm + cf
        elevated[0] = sm

        # Nearest remainder-0 point; rank of each coordinate's residual (ties: the later ranks higher).
        down = float(np.float32(1.0 / d1))
        rounded = [torch.round(e * down) for e in elevated]
        rem0 = [v * float(d1) for v in rounded]
        total = torch.stack(rounded).sum(0).to(i64)
        resid = [e - r for e, r in zip(elevated, rem0)]
        rank = [total.clone() for _ in range(d1)]
        for i in range(d1):
            for j in range(i + 1, d1):
                c = (resid[i] < resid[j]).to(i64)
                rank[i] += c
                rank[j] += 1 - c
        for i in range(d1):
            shift = (rank[i] < 0).to(i64) - (rank[i] > d).to(i64)
            rank[i] += d1 * shift
            rem0[i] = rem0[i] + shift.to(torch.float32) * float(d1)
        rank_t = torch.stack(rank, 1)  # (N, d+1), a permutation of 0..d per point
        del rank, resid, rounded, total

        # Barycentric weights (p.10): slot d - rank gets +v, slot d - rank + 1 gets -v.
        vb = torch.stack([(e - r) * down for e, r in zip(elevated, rem0)], 1)
        pos = d - rank_t
        plus = torch.zeros((n, d + 2), dtype=torch.float32, device=device).scatter_(1, pos, vb)
        minus = torch.zeros((n, d + 2), dtype=torch.float32, device=device).scatter_(1, pos + 1, vb)
        bary = plus - minus
        del plus, minus, vb, pos, elevated
        bary[:, 0] = bary[:, 0] + (1.0 + bary[:, d + 1])
        weights = bary[:, :d1]

        # Points of one simplex share its remainder-0 point and rank order:
        # number the simplices first (one sort of N codes), then their vertices
        # (a sort of S * (d+1) keys, S << N), so the work per point stays small.
        rem0_int = torch.stack(rem0[:d], 1).to(i64) if d else torch.zeros((n, 0), dtype=i64, device=device)
        if n:
            lo = rem0_int.amin(0) - 2 * d1
            span = (rem0_int.amax(0) + 2 * d1 - lo + 1).tolist()
        else:
            lo, span = torch.zeros(d, dtype=i64, device=device), [1] * d
        n_seg = int(segments.max()) + 1 if segments is not None and n else 1
        perms = d1**d1
        bits = sum(math.log2(s) for s in span) + math.log2(n_seg)
        if bits > _MAX_BITS:
            raise KeysTooWide(
                f"the CRF lattice keys need {bits:.0f} bits, more than an int64 holds: gaussian_sxy, "
                "bilateral_sxy or bilateral_srgb is very small for the torch backend on crops this large; "
                "raise it, or use backend='numba'"
            )
        radix = [1] * d
        for i in range(d - 2, -1, -1):
            radix[i] = radix[i + 1] * span[i + 1]
        key0 = ((rem0_int - lo) * torch.tensor(radix, dtype=i64, device=device)).sum(1)
        if segments is not None:
            key0 = key0 + segments.to(device=device, dtype=i64) * (radix[0] * span[0] if d else 1)
        perm = (rank_t * torch.tensor([d1**i for i in range(d1)], dtype=i64, device=device)).sum(1)
        del rem0_int, rem0
        if bits + math.log2(perms) <= _MAX_BITS:  # (remainder-0 point, rank order) in one key
            code = key0 * perms + perm
            simplex_sorted, order_p = torch.sort(code, stable=True)
            first = torch.ones(n, dtype=torch.bool, device=device)
            first[1:] = simplex_sorted[1:] != simplex_sorted[:-1]
            del code, simplex_sorted
        else:  # too wide for one key: sort by rank order, then (stably) by point
            _, by_perm = torch.sort(perm, stable=True)
            key_sorted, by_key = torch.sort(key0[by_perm], stable=True)
            order_p = by_perm[by_key]
            perm_sorted = perm[order_p]
            first = torch.ones(n, dtype=torch.bool, device=device)
            first[1:] = (key_sorted[1:] != key_sorted[:-1]) | (perm_sorted[1:] != perm_sorted[:-1])
            del by_perm, key_sorted, by_key, perm_sorted
        sid_sorted = torch.cumsum(first.to(i64), 0) - 1
        sid = torch.empty_like(sid_sorted).scatter_(0, order_p, sid_sorted)
        rep = order_p[first]  # one point per simplex
        n_simplex = rep.numel()

        # Vertex r of a simplex is rem0 + canonical[r][rank] (first d
        # coordinates); from r - 1 to r every coordinate gains 1 except the one
        # ranked d + 1 - r, which loses d + 1.
        rank_rep = rank_t[rep]
        coord_of_rank = torch.empty_like(rank_rep).scatter_(
            1, rank_rep, torch.arange(d1, device=device).expand(n_simplex, d1).contiguous()
        )
        radix_t = torch.tensor(radix + [0], dtype=i64, device=device)  # coordinate d has no digit
        step_all = sum(radix)
        key = key0[rep]
        keys = [key]
        for r in range(1, d1):
            key = key + step_all - d1 * radix_t[coord_of_rank[:, d1 - r]]
            keys.append(key)
        packed = torch.stack(keys, 1).reshape(-1)  # entry s * (d+1) + r
        vkeys, order_v = torch.sort(packed, stable=True)
        new = torch.ones_like(vkeys, dtype=torch.bool)
        new[1:] = vkeys[1:] != vkeys[:-1]
        vid_sorted = torch.cumsum(new.to(i64), 0) - 1
        uniq = vkeys[new]
        m = uniq.numel()
        vertex = torch.empty_like(vid_sorted).scatter_(0, order_v, vid_sorted)  # (S*(d+1),)
        del packed, keys, key, vkeys, new, rank_t, rank_rep, coord_of_rank

        # Blur along direction j: new = old + (n1 + n2) / 2 with n1 = every
        # coordinate -1 except j, +d, and n2 the opposite; one sparse matrix per
        # direction (a missing neighbour has no entry, i.e. counts as 0).
        rows = torch.arange(m, device=device)
        neighbours = torch.full((d1, 2, m + 1), m, dtype=i64, device=device)  # m: the always-zero vertex
        for j in range(d1):
            delta = -step_all + (d1 * radix[j] if j < d else 0)
            for k, sign in enumerate((1, -1)):
                target = uniq + sign * delta
                at = torch.searchsorted(uniq, target).clamp_(max=max(m - 1, 0))
                neighbours[j, k, :m] = torch.where(uniq[at] == target, at, m)

        self.m, self.n_simplex = m, n_simplex
        self.alpha = float(np.float32(1.0) / (np.float32(1.0) + np.float32(2.0) ** np.float32(-d)))
        self.weights = weights.contiguous()
        self.vertex = vertex  # (S*(d+1),) vertex of each simplex corner
        self.simplex = sid  # (N,) simplex of each point
        # Sparse products where torch has them (CPU, CUDA); gathers and index_add elsewhere (MPS).
        self.sparse = device.type in ("cpu", "cuda") if sparse is None else sparse
        if not self.sparse:
            self.neighbours = neighbours
            return
        weights3 = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float32, device=device).expand(m, 3)
        self.blur = []  # d+1 sparse (M+1, M+1) steps; row M (the zero vertex) is empty
        for j in range(d1):
            # Row i: n1 (if it exists), i, n2 (if it exists), in row-major order.
            cols = torch.stack([neighbours[j, 0, :m], rows, neighbours[j, 1, :m]], 1)
            keep = cols < m
            crow = torch.zeros(m + 2, dtype=i64, device=device)
            crow[1 : m + 1] = torch.cumsum(keep.sum(1), 0)
            crow[m + 1] = crow[m]
            self.blur.append(_csr(crow, cols[keep], weights3[keep], (m + 1, m + 1)))
        crow = torch.zeros(n_simplex + 1, dtype=i64, device=device)
        crow[1:] = torch.cumsum(torch.bincount(sid_sorted, minlength=n_simplex), 0) if n else 0
        ones = torch.ones(n, dtype=torch.float32, device=device)
        self._gather = _csr(crow, order_p, ones, (n_simplex, n))  # points -> their simplex
        crow = torch.zeros(m + 2, dtype=i64, device=device)
        crow[1:] = torch.cumsum(torch.bincount(vid_sorted, minlength=m + 1), 0) if m else 0
        self._to_vertex = _csr(crow, order_v, torch.ones(vid_sorted.numel(), device=device), (m + 1, n_simplex * d1))
        # Slice: point p takes sum_r (w_r * alpha) * value of its simplex's corner r.
        cols = (sid[:, None] * d1 + torch.arange(d1, device=device)).reshape(-1)
        crow = torch.arange(0, n * d1 + 1, d1, device=device)
        self._slice = _csr(crow, cols, (weights * self.alpha).reshape(-1), (n, n_simplex * d1))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Splat (N, C) float32 ``values``, blur, slice: the lattice's Gaussian filter."""
        n, c = values.shape
        if n == 0:
            return values.clone()
        d1 = self.d + 1
        # Splat: w * value per simplex corner, summed per simplex, then per vertex.
        if c == 1:
            wx = self.weights * values
        else:
            wx = (self.weights[:, :, None] * values[:, None, :]).reshape(n, d1 * c)
        if not self.sparse:
            corners = values.new_zeros((self.n_simplex, d1 * c)).index_add_(0, self.simplex, wx)
            grid = values.new_zeros((self.m + 1, c)).index_add_(0, self.vertex, corners.view(-1, c))
            for j in range(d1):
                nxt = grid.index_select(0, self.neighbours[j, 0])
                nxt += grid.index_select(0, self.neighbours[j, 1])
                nxt *= 0.5
                nxt += grid
                grid = nxt
            at = grid.index_select(0, self.vertex).view(self.n_simplex, d1, c)
            return ((self.weights * self.alpha)[:, :, None] * at.index_select(0, self.simplex)).sum(1)
        corners = (self._gather @ wx).reshape(self.n_simplex * d1, c)
        grid = self._to_vertex @ corners  # (M+1, C); row M stays 0
        for step in self.blur:
            grid = step @ grid
        return self._slice @ grid.index_select(0, self.vertex)
