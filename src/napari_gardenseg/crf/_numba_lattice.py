"""numba kernels of the numba CRF backend (see ``_numba``): pydensecrf's permutohedral
lattice and mean field, compiled on first use and cached on disk (``cache=True``).

Imported only when the numba backend runs: importing numba takes a while.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_SSE_BLOCK = 4  # pydensecrf's SSE init takes pixels four at a time


@njit(cache=True, nogil=True, inline="always")
def _slot(k0, k1, shift):
    h = (np.uint64(k0) * np.uint64(0x9E3779B97F4A7C15)) ^ (np.uint64(k1) * np.uint64(0xC2B2AE3D27D4EB4F))
    return np.int64(h >> np.uint64(shift))


@njit(cache=True, nogil=True)
def _find(table, k0, k1, shift, new_id):
    """Id of the key (k0, k1) in ``table`` (cap, 3) int64 rows (k0, k1, id; id -1 =
    empty slot), open addressing with linear probing; absent keys get ``new_id``
    (-1: not inserted, -1 returned). The caller keeps the table at most half full."""
    mask = table.shape[0] - 1
    slot = _slot(k0, k1, shift)
    while True:
        e = table[slot, 2]
        if e < 0:
            if new_id >= 0:
                table[slot, 0] = k0
                table[slot, 1] = k1
                table[slot, 2] = new_id
            return new_id
        if table[slot, 0] == k0 and table[slot, 1] == k1:
            return e
        slot = (slot + 1) & mask


@njit(cache=True, nogil=True)
def _grow(table, shift):
    """The same entries in a table of twice the capacity (and its new shift)."""
    new = np.full((table.shape[0] * 2, 3), -1, np.int64)
    shift -= 1
    mask = new.shape[0] - 1
    for i in range(table.shape[0]):
        if table[i, 2] >= 0:
            slot = _slot(table[i, 0], table[i, 1], shift)
            while new[slot, 2] >= 0:
                slot = (slot + 1) & mask
            new[slot, 0] = table[i, 0]
            new[slot, 1] = table[i, 1]
            new[slot, 2] = table[i, 2]
    return new, shift


@njit(cache=True, nogil=True)
def _lattice(feat, pad, scale, down, canonical):
    """pydensecrf's ``Permutohedral::init`` (SSE path) over ``feat`` (N, d) float32, d <= 5.

    Returns (offset (N*(d+1),) int32: vertex id + 1 of each simplex corner,
    barycentric (N*(d+1),) float32, neighbours (d+1, 2, M) int32: id + 1
    of the blur neighbours, 0 where missing, M), or M = -1 if a lattice
    coordinate is beyond +-2^20 - 64 (pydensecrf's own keys are 16 bit).
    ``pad`` zero-feature points are entered after the N points, as
    pydensecrf's padding lanes.

    Vertex ids only name the vertices (the filter's sums do not depend on
    them). A vertex key is its d coordinates, 21 bits each (offset by
    2^20), packed into two int64 (three fields, then two), so neighbours
    are key -+ constants. Points of one simplex (same remainder-0 point
    and rank order) share their d+1 vertices, so simplices are looked up
    first and one seen before gives its vertices without d+1 lookups.
    """
    n, d = feat.shape
    d1 = d + 1
    d1f = np.float32(d1)
    bias = np.int64(1) << 20
    limit = bias - 64
    unit = np.zeros((d, 2), np.int64)  # the packed key of a unit step along each coordinate
    for i in range(d):
        unit[i, i // 3] = np.int64(1) << (21 * (i % 3))
    ones0 = np.int64(0)
    ones1 = np.int64(0)
    base0 = np.int64(0)
    base1 = np.int64(0)
    for i in range(d):
        ones0 += unit[i, 0]
        ones1 += unit[i, 1]
        base0 += bias * unit[i, 0]
        base1 += bias * unit[i, 1]
    code_shift = 21 * max(d - 3, 0)  # the simplex's rank code above the coordinates of word 1
    # canonical[r, rank] packed: vertex r = remainder-0 point + canonical offsets
    cap = 1024  # small tables stay in cache; they double when half full
    shift = 64
    c = cap
    while c > 1:
        c //= 2
        shift -= 1
    v_table = np.full((cap, 3), -1, np.int64)
    v_shift = shift
    v_keys = np.empty((cap // 2 + 1, 2), np.int64)
    m = 0
    s_table = np.full((cap, 3), -1, np.int64)
    s_shift = shift
    s_verts = np.empty((cap // 2 + 1) * d1, np.int32)
    n_s = 0
    offset = np.empty(n * d1, np.int32)
    bary_out = np.empty(n * d1, np.float32)
    # Per block of points, the arithmetic runs lane by lane (vectorised by LLVM) ...
    block = 64
    elev = np.empty((d1, block), np.float32)
    rem0 = np.empty((d1, block), np.float32)
    rank = np.empty((d1, block), np.int32)
    by_rank = np.empty((d1, block), np.float32)
    total = np.empty(block, np.int32)
    sm = np.empty(block, np.float32)
    keys = np.empty((3, block), np.int64)  # packed remainder-0 point (2 words), rank code
    zero = np.float32(0.0)
    half = np.float32(0.5)
    one = np.float32(1.0)
    for p0 in range(0, n + pad, block):
        nb = min(block, n + pad - p0)
        for b in range(nb):
            sm[b] = zero
        for j in range(d, 0, -1):
            s_j = scale[j - 1]
            jf = np.float32(j)
            for b in range(nb):
                f = feat[p0 + b, j - 1] if p0 + b < n else zero
                cf = f * s_j
                elev[j, b] = sm[b] - jf * cf
                sm[b] = sm[b] + cf
        for b in range(nb):
            elev[0, b] = sm[b]
            total[b] = 0
        for i in range(d1):
            for b in range(nb):
                v = down * elev[i, b]
                # a coordinate beyond the keys' 21 bits (a tiny sxy or srgb; inf) is refused here,
                # before the int32 casts below overflow and the rank writes leave their array
                if not abs(v) * d1f < limit:
                    return offset, bary_out, np.zeros((d1, 2, 0), np.int32), -1
                fl = np.floor(v)
                frac = v - fl
                # round half to even, as SSE does
                up = (frac > half) | ((frac == half) & (np.int32(fl) % 2 != 0))
                r = fl + np.float32(up)
                rem0[i, b] = r * d1f
                total[b] += np.int32(r)
                rank[i, b] = 0
        for i in range(d):
            for j in range(i + 1, d1):
                for b in range(nb):
                    lower = np.int32(elev[i, b] - rem0[i, b] < elev[j, b] - rem0[j, b])
                    rank[i, b] += lower
                    rank[j, b] += 1 - lower
        for i in range(d1):
            for b in range(nb):
                rk = rank[i, b] + total[b]
                wrap = np.int32(rk < 0) - np.int32(rk >= d1)
                rank[i, b] = rk + wrap * d1
                rem0[i, b] = rem0[i, b] + np.float32(wrap) * d1f
        # Barycentric weights: slot d - rank[i] gets +v_i, the next one -v_i (two
        # terms per slot: the sum does not depend on their order), slot 0 wraps.
        for i in range(d1):
            for b in range(nb):
                by_rank[rank[i, b], b] = (elev[i, b] - rem0[i, b]) * down
        for b in range(nb):
            p = p0 + b
            if p < n:
                bary_out[p * d1] = by_rank[d, b] + (one + (zero - by_rank[0, b]))
                for t in range(1, d1):
                    bary_out[p * d1 + t] = by_rank[d - t, b] - by_rank[d - t + 1, b]
        for b in range(nb):
            keys[0, b] = base0
            keys[1, b] = base1
            keys[2, b] = 0
        for i in range(d):
            u0 = unit[i, 0]
            u1 = unit[i, 1]
            for b in range(nb):
                coord = np.int64(rem0[i, b])
                keys[0, b] += coord * u0
                keys[1, b] += coord * u1
                keys[2, b] = keys[2, b] * d1 + rank[i, b]
        for i in range(d):
            for b in range(nb):
                coord = np.int64(rem0[i, b])
                if coord > limit or coord < -limit:
                    return offset, bary_out, np.zeros((d1, 2, 0), np.int32), -1
        # ... then the hash tables, point by point.
        for b in range(nb):
            if 2 * n_s >= s_table.shape[0]:
                s_table, s_shift = _grow(s_table, s_shift)
                grown = np.empty((s_table.shape[0] // 2 + 1) * d1, np.int32)
                grown[: n_s * d1] = s_verts[: n_s * d1]
                s_verts = grown
            k0 = keys[0, b]
            k1 = keys[1, b]
            s = _find(s_table, k0, k1 | (keys[2, b] << code_shift), s_shift, n_s)
            if s == n_s:
                n_s += 1
                for r in range(d1):
                    v0 = k0
                    v1 = k1
                    for i in range(d):
                        step = np.int64(canonical[r, rank[i, b]])
                        v0 += step * unit[i, 0]
                        v1 += step * unit[i, 1]
                    if 2 * m >= v_table.shape[0]:
                        v_table, v_shift = _grow(v_table, v_shift)
                        grown_keys = np.empty((v_table.shape[0] // 2 + 1, 2), np.int64)
                        grown_keys[:m] = v_keys[:m]
                        v_keys = grown_keys
                    e = _find(v_table, v0, v1, v_shift, m)
                    if e == m:
                        v_keys[m, 0] = v0
                        v_keys[m, 1] = v1
                        m += 1
                    s_verts[s * d1 + r] = e + 1
            p = p0 + b
            if p < n:
                for r in range(d1):
                    offset[p * d1 + r] = s_verts[s * d1 + r]
    # Blur neighbours along direction j: n1 = every coordinate -1 except j, +d; n2 the opposite.
    neighbours = np.zeros((d1, 2, m), np.int32)
    for j in range(d1):
        a0 = -ones0
        a1 = -ones1
        if j < d:
            a0 += d1 * unit[j, 0]
            a1 += d1 * unit[j, 1]
        for i in range(m):
            neighbours[j, 0, i] = _find(v_table, v_keys[i, 0] + a0, v_keys[i, 1] + a1, v_shift, -1) + 1
            neighbours[j, 1, i] = _find(v_table, v_keys[i, 0] - a0, v_keys[i, 1] - a1, v_shift, -1) + 1
    return offset, bary_out, neighbours, m


@njit(cache=True, nogil=True)
def _filter(offset, bary, neighbours, m, alpha, values_in, out, grid, spare):
    """pydensecrf's ``compute``: splat (N, K) ``values_in``, blur, slice into ``out``.

    ``grid``/``spare``: (M+2, K) float32 scratch (row 0 is the missing neighbour).
    """
    n, c = values_in.shape
    d1 = neighbours.shape[0]
    zero = np.float32(0.0)
    half = np.float32(0.5)
    grid[:] = zero
    spare[0, :] = zero
    for i in range(n):
        for j in range(d1):
            o = offset[i * d1 + j]
            w = bary[i * d1 + j]
            for k in range(c):
                grid[o, k] += w * values_in[i, k]
    for j in range(d1):
        for i in range(m):
            a = neighbours[j, 0, i]
            b = neighbours[j, 1, i]
            for k in range(c):
                spare[i + 1, k] = grid[i + 1, k] + half * (grid[a, k] + grid[b, k])
        grid, spare = spare, grid
    if c <= 2:  # seqCompute: out += w * value * alpha
        for i in range(n):
            for k in range(c):
                acc = zero
                for j in range(d1):
                    acc += bary[i * d1 + j] * grid[offset[i * d1 + j], k] * alpha
                out[i, k] = acc
    else:  # sseCompute: out += (w * alpha) * value
        for i in range(n):
            for k in range(c):
                acc = zero
                for j in range(d1):
                    acc += (bary[i * d1 + j] * alpha) * grid[offset[i * d1 + j], k]
                out[i, k] = acc


@njit(cache=True, nogil=True)
def _exp_normalize(energy, q):
    """pydensecrf's expAndNormalize over (N, K) negative energies."""
    n, c = energy.shape
    for i in range(n):
        top = energy[i, 0]
        for k in range(1, c):
            if energy[i, k] > top:
                top = energy[i, k]
        s = np.float32(0.0)
        for k in range(c):
            e = np.exp(energy[i, k] - top)
            q[i, k] = e
            s += e
        for k in range(c):
            q[i, k] = q[i, k] / s


@njit(cache=True, nogil=True)
def _norm(offset, bary, neighbours, m, alpha, n):
    """NORMALIZE_SYMMETRIC: 1 / sqrt(K 1 + 1e-20) per point, in double as pydensecrf."""
    ones = np.ones((n, 1), np.float32)
    raw = np.empty((n, 1), np.float32)
    grid = np.empty((m + 2, 1), np.float32)
    spare = np.empty((m + 2, 1), np.float32)
    _filter(offset, bary, neighbours, m, alpha, ones, raw, grid, spare)
    norm = np.empty(n, np.float32)
    for i in range(n):
        norm[i] = np.float32(1.0 / math.sqrt(np.float64(raw[i, 0]) + 1e-20))
    return norm


@njit(cache=True, nogil=True)
def _grid_lattice(h, w, sxy, scale, down, canonical):
    """The Gaussian kernel's lattice over an h x w pixel grid, features (x / sxy, y / sxy)."""
    feat = np.empty((h * w, 2), np.float32)
    for y in range(h):
        for x in range(w):
            feat[y * w + x, 0] = np.float32(x) / sxy
            feat[y * w + x, 1] = np.float32(y) / sxy
    return _lattice(feat, 0, scale, down, canonical)


@njit(cache=True, nogil=True)
def _grid_crop(offset_g, bary_g, neighbours_g, m_g, width_g, h, w):
    """The lattice of the h x w top-left part of a grid lattice (``width_g`` wide).

    A pixel's simplex and weights depend only on its (x, y), so they are the
    grid's; the crop's vertices are those its pixels touch (renumbered) and a
    neighbour the crop does not touch is missing, as in a lattice of its own.
    """
    d1 = neighbours_g.shape[0]
    n = h * w
    local = np.zeros(m_g + 1, np.int32)  # grid id + 1 -> crop id + 1 (0: not touched)
    used = np.empty(min(m_g, n * d1), np.int32)
    m = 0
    offset = np.empty(n * d1, np.int32)
    bary = np.empty(n * d1, np.float32)
    for y in range(h):
        for x in range(w):
            p = y * w + x
            g = y * width_g + x
            for r in range(d1):
                o = offset_g[g * d1 + r]
                if local[o] == 0:
                    used[m] = o
                    m += 1
                    local[o] = m
                offset[p * d1 + r] = local[o]
                bary[p * d1 + r] = bary_g[g * d1 + r]
    neighbours = np.empty((d1, 2, m), np.int32)
    for j in range(d1):
        for k in range(2):
            for i in range(m):
                neighbours[j, k, i] = local[neighbours_g[j, k, used[i] - 1]]
    return offset, bary, neighbours, m


@njit(cache=True, nogil=True)
def _mean_field(
    rgb,
    unary,
    iterations,
    g_off,
    g_bary,
    g_nb,
    g_m,
    g_w,
    b_sxy,
    b_srgb,
    b_w,
    g_alpha,
    b_scale,
    b_down,
    b_canon,
    b_alpha,
):
    """Mean-field Q (N, K) float32 for ``unary`` (N, K) over ``rgb`` (h, w, 3) uint8,
    with the Gaussian kernel's lattice given (``g_m`` vertices; unused if ``g_w`` is 0)."""
    h, w = rgb.shape[0], rgb.shape[1]
    n, c = unary.shape
    pad = (_SSE_BLOCK - n % _SSE_BLOCK) % _SSE_BLOCK
    neg = np.empty((n, c), np.float32)
    for i in range(n):
        for k in range(c):
            neg[i, k] = -unary[i, k]
    q = np.empty((n, c), np.float32)
    _exp_normalize(neg, q)
    if iterations == 0:
        return q
    use_g = g_w > 0
    use_b = b_w > 0
    g_norm = _norm(g_off, g_bary, g_nb, g_m, g_alpha, n) if use_g else np.empty(0, np.float32)
    if use_b:
        feat = np.empty((n, 5), np.float32)
        for y in range(h):
            for x in range(w):
                p = y * w + x
                feat[p, 0] = np.float32(x) / b_sxy
                feat[p, 1] = np.float32(y) / b_sxy
                for ch in range(3):
                    feat[p, 2 + ch] = np.float32(rgb[y, x, ch]) / b_srgb
        b_off, b_bary, b_nb, b_m = _lattice(feat, pad, b_scale, b_down, b_canon)
        b_norm = _norm(b_off, b_bary, b_nb, b_m, b_alpha, n) if b_m >= 0 else np.empty(0, np.float32)
    else:
        b_off, b_bary, b_nb, b_m = (np.empty(0, np.int32), np.empty(0, np.float32), np.empty((6, 2, 0), np.int32), 0)
        b_norm = np.empty(0, np.float32)
    if g_m < 0 or b_m < 0:
        return np.empty((0, c), np.float32)  # lattice coordinates too wide
    grid = np.empty((max(g_m, b_m) + 2, c), np.float32)
    spare = np.empty((max(g_m, b_m) + 2, c), np.float32)
    scaled = np.empty((n, c), np.float32)
    message = np.empty((n, c), np.float32)
    tmp = np.empty((n, c), np.float32)
    for _ in range(iterations):
        for i in range(n):
            for k in range(c):
                tmp[i, k] = neg[i, k]
        for kernel in range(2):
            if kernel == 0:
                if not use_g:
                    continue
                off, bary, nb, m, norm, neg_w, alpha = g_off, g_bary, g_nb, g_m, g_norm, -g_w, g_alpha
            else:
                if not use_b:
                    continue
                off, bary, nb, m, norm, neg_w, alpha = b_off, b_bary, b_nb, b_m, b_norm, -b_w, b_alpha
            for i in range(n):
                for k in range(c):
                    scaled[i, k] = q[i, k] * norm[i]
            _filter(off, bary, nb, m, alpha, scaled, message, grid[: m + 2], spare[: m + 2])
            for i in range(n):
                for k in range(c):
                    tmp[i, k] = tmp[i, k] - neg_w * (message[i, k] * norm[i])
        _exp_normalize(tmp, q)
    return q
