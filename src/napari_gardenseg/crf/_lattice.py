"""The permutohedral lattice (Adams, Baek & Davis 2010) in plain PyTorch.

It follows pydensecrf's ``permutohedral.cpp`` (the SSE code path that x86
builds run) step by step, in float32 like it: features are elevated onto the
hyperplane with the same scale factors, rounded to the nearest remainder-0
lattice point (round half to even, as SSE does), ranked, given barycentric
weights, splatted onto the d+1 vertices of their simplex, blurred with
(1/2, 1, 1/2) along each of the d+1 lattice directions (a missing neighbour
counts as 0) and sliced back with pydensecrf's ``alpha = 1 / (1 + 2^-d)``.

Instead of a hash table, vertex keys are packed into one int64 (mixed radix
over the keys' range) and numbered with ``torch.unique``; blur neighbours are
found with ``searchsorted``. Points carry a segment id that is part of the
key, so many crops share one lattice build and one blur without their
vertices ever meeting: the result per crop is that of a lattice of its own.
The structure (splat indices, weights, neighbours) is built once and reused
for every filtering of new values (every mean-field iteration).

Where the result can differ from pydensecrf's by float rounding: the splat
(``index_add_``) and the slice may add in another order for some vertices,
and ``exp`` comes from another maths library in the mean field.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_MAX_BITS = 62  # packed keys must fit a signed int64


class Lattice:
    """A lattice built over ``features`` (N, d) float32, one per ``segments`` id."""

    def __init__(self, features: torch.Tensor, segments: torch.Tensor | None = None):
        if features.dtype != torch.float32 or features.ndim != 2:
            raise ValueError("lattice features must be a float32 (N, d) tensor")
        device = features.device
        n, d = features.shape
        d1 = d + 1
        self.n, self.d = n, d
        f32 = torch.float32

        # Elevate (E p, p.5 of Adams et al.), in float32 with pydensecrf's constants.
        inv_std = np.float32(math.sqrt(2.0 / 3.0) * d1)
        scale = [float(np.float32(1.0 / math.sqrt((i + 2) * (i + 1)) * float(inv_std))) for i in range(d)]
        elevated = torch.empty((n, d1), dtype=f32, device=device)
        sm = torch.zeros(n, dtype=f32, device=device)
        for j in range(d, 0, -1):
            cf = features[:, j - 1] * scale[j - 1]
            elevated[:, j] = sm - float(j) * cf
            sm = sm + cf
        elevated[:, 0] = sm

        # Nearest remainder-0 point, then the rank of each coordinate's residual.
        down = float(np.float32(1.0 / d1))
        v = torch.round(elevated * down)
        rem0 = v * float(d1)
        total = v.sum(1).to(torch.int64)
        resid = elevated - rem0
        lt = resid[:, :, None] < resid[:, None, :]  # lt[n, i, j]: resid_i < resid_j
        upper = torch.ones(d1, d1, dtype=torch.bool, device=device).triu(1)  # j > i
        rank = (lt & upper).sum(2) + (~lt & upper).sum(1)
        rank = rank + total[:, None]
        low, high = rank < 0, rank > d
        rank = rank + d1 * low - d1 * high
        rem0 = rem0 + float(d1) * low - float(d1) * high

        # Barycentric weights (p.10): slots d - rank get +v, d - rank + 1 get -v.
        vb = (elevated - rem0) * down
        pos = d - rank
        plus = torch.zeros((n, d + 2), dtype=f32, device=device).scatter_(1, pos, vb)
        minus = torch.zeros((n, d + 2), dtype=f32, device=device).scatter_(1, pos + 1, vb)
        bary = plus - minus
        bary[:, 0] = bary[:, 0] + (1.0 + bary[:, d + 1])
        self.weights = bary[:, :d1].contiguous()  # (N, d+1)

        # Vertex keys: rem0 + canonical[remainder][rank], first d coordinates.
        r = torch.arange(d1, device=device)
        canonical = torch.where(r[None, :] <= d - r[:, None], r[:, None], r[:, None] - d1)  # [remainder, rank]
        keys = rem0[:, None, :d].to(torch.int64) + canonical[:, rank[:, :d]].permute(1, 0, 2)  # (N, d+1, d)
        keys = keys.reshape(-1, d)
        seg = None if segments is None else segments.to(device=device, dtype=torch.int64).repeat_interleave(d1)

        lo = keys.amin(0) - d1 if keys.numel() else torch.zeros(d, dtype=torch.int64, device=device)
        hi = keys.amax(0) + d1 if keys.numel() else torch.zeros(d, dtype=torch.int64, device=device)
        span = (hi - lo + 1).tolist()
        n_seg = int(seg.max()) + 1 if seg is not None and seg.numel() else 1
        bits = sum(math.log2(s) for s in span) + math.log2(n_seg)
        radix = [1] * d
        for i in range(d - 2, -1, -1):
            radix[i] = radix[i + 1] * span[i + 1]
        deltas = []  # packed offset of the n1 neighbour along each direction (n2 = -n1)
        for j in range(d1):
            deltas.append(-sum(radix) + (d1 * radix[j] if j < d else 0))
        if bits <= _MAX_BITS:
            packed = ((keys - lo) * torch.tensor(radix, dtype=torch.int64, device=device)).sum(1)
            if seg is not None:
                packed = packed + seg * (radix[0] * span[0])
            uniq, inverse = torch.unique(packed, sorted=True, return_inverse=True)
            m = uniq.numel()
            blur = torch.empty((d1, 2, m + 1), dtype=torch.int64, device=device)
            for j, delta in enumerate(deltas):
                for k, sign in enumerate((1, -1)):
                    target = uniq + sign * delta
                    at = torch.searchsorted(uniq, target).clamp_(max=max(m - 1, 0))
                    found = uniq[at] == target if m else torch.zeros(0, dtype=torch.bool, device=device)
                    blur[j, k, :m] = torch.where(found, at, m)
                    blur[j, k, m] = m
        else:  # keys too wide to pack: number them row-wise (slower, same lattice)
            full = keys if seg is None else torch.cat([seg[:, None], keys], 1)
            uniq_rows, inverse = torch.unique(full, dim=0, return_inverse=True)
            m = uniq_rows.shape[0]
            off = 0 if seg is None else 1
            steps = []
            for j in range(d1):
                step = torch.full((d,), -1, dtype=torch.int64, device=device)
                if j < d:
                    step[j] = d
                step = torch.cat([torch.zeros(off, dtype=torch.int64, device=device), step])
                steps += [step, -step]
            cand = torch.cat([uniq_rows] + [uniq_rows + s for s in steps])
            _, ids = torch.unique(cand, dim=0, return_inverse=True)
            lut = torch.full((int(ids.max()) + 1 if ids.numel() else 1,), m, dtype=torch.int64, device=device)
            lut[ids[:m]] = torch.arange(m, device=device)
            nb = lut[ids[m:]].view(d1, 2, m)
            blur = torch.cat([nb, torch.full((d1, 2, 1), m, dtype=torch.int64, device=device)], 2)
        self.m = m
        self.offsets = inverse.view(n, d1)  # vertex of each point's d+1 simplex corners
        self.blur = blur  # (d+1, 2, M+1); index M is an always-zero vertex
        self.alpha = float(np.float32(1.0) / (np.float32(1.0) + np.float32(2.0) ** np.float32(-d)))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Splat (N, C) float32 ``values``, blur, slice: the lattice's Gaussian filter."""
        n, c = values.shape
        d1 = self.d + 1
        flat = self.offsets.reshape(-1)
        contrib = (self.weights.reshape(-1, 1) * values.repeat_interleave(d1, 0)) if n else values.new_zeros((0, c))
        grid = values.new_zeros((self.m + 1, c)).index_add_(0, flat, contrib)
        for j in range(d1):
            nxt = grid.index_select(0, self.blur[j, 0])
            nxt += grid.index_select(0, self.blur[j, 1])
            nxt *= 0.5
            nxt += grid
            grid = nxt
        gathered = grid.index_select(0, flat).view(n, d1, c)
        out = values.new_zeros((n, c))
        if c <= 2:  # pydensecrf's sequential path: (w * value) * alpha
            for r in range(d1):
                out += (self.weights[:, r : r + 1] * gathered[:, r]) * self.alpha
        else:  # its SSE path: (w * alpha) * value
            wa = self.weights * self.alpha
            for r in range(d1):
                out += wa[:, r : r + 1] * gathered[:, r]
        return out
