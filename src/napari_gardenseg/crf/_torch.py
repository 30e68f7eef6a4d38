"""The torch backend: pydensecrf's mean field on the permutohedral lattice of ``_lattice``.

Same model as pydensecrf's ``DenseCRF2D``: a Gaussian kernel on (x/sxy, y/sxy)
and a bilateral kernel on (x/sxy, y/sxy, r/srgb, g/srgb, b/srgb), each
NORMALIZE_SYMMETRIC (the lattice's output for a signal of ones, n, gives
K q = n^-1/2 * lattice(n^-1/2 * q)) with Potts compatibility (pydensecrf's
PottsCompatibility multiplies by -w), and mean field
``Q = softmax(-unary - sum_k (-w_k) K_k Q)`` from ``Q = softmax(-unary)``.

Many crops run as one: their pixels form one point set whose lattice keys
carry the crop's index (see ``_lattice``), so one lattice build and one blur
per kernel and iteration serve them all, and each crop's result is the one it
would get alone. A per-crop Gaussian weight is a per-pixel factor, and crops
without the Gaussian term stay out of its lattice. With two labels only one
channel is filtered (K q0 = K 1 - K q1). Where the labels differ from
pydensecrf's, it is mostly the lattice's vertices: pydensecrf also enters up to
three zero-feature padding points (its SSE lanes) when a crop's pixel count is
not a multiple of 4, which the numba backend reproduces and this one does not
(Q then differs by up to a few hundredths near those vertices); otherwise float
rounding (summation order in the splat and slice, ``exp``) deciding near-ties,
or a half-way lattice rounding; see ``_lattice``.
"""

from __future__ import annotations

import numpy as np
import torch

from ._lattice import KeysTooWide, Lattice


class _Kernel:
    """A symmetric-normalised lattice filter over fixed features."""

    def __init__(self, features: torch.Tensor, segments: torch.Tensor | None):
        self.lattice = Lattice(features, segments)
        ones = torch.ones((features.shape[0], 1), dtype=torch.float32, device=features.device)
        # pydensecrf: 1 / sqrt(n + 1e-20) in double (on the CPU: MPS has no float64)
        norm = self.lattice.filter(ones).cpu().to(torch.float64)
        self.norm = (1.0 / torch.sqrt(norm + 1e-20)).to(torch.float32).to(features.device)

    def apply(self, q: torch.Tensor) -> torch.Tensor:
        return self.lattice.filter(q * self.norm) * self.norm


def _features(crops, device, sxy: float, srgb: float | None) -> torch.Tensor:
    """(sum of h*w, 2 or 5) float32 features of each crop in its own coordinates, pixel order y-major."""
    s = torch.tensor(sxy, dtype=torch.float32)
    parts = []
    for rgb in crops:
        h, w = rgb.shape[:2]
        x = (torch.arange(w, dtype=torch.float32) / s).repeat(h)
        y = (torch.arange(h, dtype=torch.float32) / s).repeat_interleave(w)
        cols = [x, y]
        if srgb is not None:
            c = torch.from_numpy(np.ascontiguousarray(rgb).reshape(-1, 3)).to(torch.float32)
            cols += list((c / torch.tensor(srgb, dtype=torch.float32)).unbind(1))
        parts.append(torch.stack(cols, 1))
    return torch.cat(parts).to(device)


def _softmax(neg_energy: torch.Tensor) -> torch.Tensor:
    # pydensecrf's expAndNormalize: subtract the max, exp, divide by the sum.
    e = torch.exp(neg_energy - neg_energy.amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


def dense_crf_batch(rgbs, unaries, iterations: int, gaussian, bilateral, device="cpu") -> list[np.ndarray]:
    """Mean-field Q for many crops at once (see :func:`_dense_crf_batch`); crops
    whose lattice keys together are too wide for int64 run in smaller groups."""
    try:
        return _dense_crf_batch(rgbs, unaries, iterations, gaussian, bilateral, device)
    except KeysTooWide:
        if len(rgbs) < 2:
            raise
    half = len(rgbs) // 2
    g_sxy, g_compats = gaussian
    return dense_crf_batch(
        rgbs[:half], unaries[:half], iterations, (g_sxy, list(g_compats)[:half]), bilateral, device
    ) + dense_crf_batch(rgbs[half:], unaries[half:], iterations, (g_sxy, list(g_compats)[half:]), bilateral, device)


def _dense_crf_batch(rgbs, unaries, iterations: int, gaussian, bilateral, device="cpu") -> list[np.ndarray]:
    """Mean-field Q for many crops at once.

    ``rgbs``: list of (h, w, 3) uint8; ``unaries``: list of (K, h*w) float32
    (same K for all); ``gaussian``: (sxy, compats) with one compat per crop;
    ``bilateral``: (sxy, srgb, compat). Returns a list of (K, h, w) float32.
    """
    if not rgbs:
        return []
    device = torch.device(device)
    k = unaries[0].shape[0]
    sizes = [r.shape[0] * r.shape[1] for r in rgbs]
    seg = torch.repeat_interleave(torch.arange(len(rgbs)), torch.tensor(sizes)).to(device)
    unary = torch.from_numpy(np.concatenate([np.asarray(u, np.float32).T for u in unaries])).to(device)  # (N, K)

    # (kernel, points it covers or None for all, -compat per point or one float)
    kernels = []
    g_sxy, g_compats = gaussian
    g_compats = np.asarray(g_compats, np.float32)
    on = np.flatnonzero(g_compats > 0) if iterations else np.zeros(0, np.int64)
    if on.size:
        # Crops without the Gaussian term (thin objects) stay out of its lattice.
        if on.size == len(rgbs):
            points, g_seg = None, seg
        else:
            starts = np.concatenate([[0], np.cumsum(sizes)])
            points = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in on]).to(device)
            g_seg = torch.repeat_interleave(torch.arange(on.size), torch.tensor([sizes[i] for i in on])).to(device)
        if len(set(g_compats[on].tolist())) == 1:
            neg_w = float(-g_compats[on[0]])
        else:
            neg_w = torch.from_numpy(np.repeat(-g_compats[on], [sizes[i] for i in on])).to(device)[:, None]
        kernels.append((_Kernel(_features([rgbs[i] for i in on], device, g_sxy, None), g_seg), points, neg_w))
    b_sxy, b_srgb, b_compat = bilateral
    if b_compat > 0 and iterations:
        kernels.append((_Kernel(_features(rgbs, device, b_sxy, b_srgb), seg), None, float(np.float32(-b_compat))))

    q = _softmax(-unary)
    if k == 2:
        # Two labels: K q0 = K 1 - K q1 (K is linear), so one channel is filtered.
        ones = [kernel.apply(q.new_ones((kernel.lattice.n, 1))) for kernel, _, _ in kernels]
    for _ in range(iterations):
        tmp = -unary
        for n_k, (kernel, points, neg_w) in enumerate(kernels):
            qk = q if points is None else q.index_select(0, points)
            if k == 2:
                k1 = kernel.apply(qk[:, 1:].contiguous())
                message = torch.cat([ones[n_k] - k1, k1], 1)
            else:
                message = kernel.apply(qk)
            if points is None:
                tmp = tmp - neg_w * message
            else:
                tmp = tmp.index_add(0, points, -(neg_w * message))
        q = _softmax(tmp)
    out = q.T.contiguous().cpu().numpy()
    result, start = [], 0
    for rgb, size in zip(rgbs, sizes):
        result.append(out[:, start : start + size].reshape(k, rgb.shape[0], rgb.shape[1]))
        start += size
    return result
