"""Independent, test-only numpy reference of SPEC.md sections 0-9.

Written straight from `shared/SPEC.md`, without reading the library, for clarity over speed:
explicit Python loops over tokens (use it on tiny clips only). Float32 wherever SPEC says
float32; integer steps (budget, quotas, ranks) in exact Python ints.

Every stage takes the previous stage's outputs, so a test can feed it the library's own
output of the stage before (SPEC's "stage by stage" check). Stages whose decisions can be
genuine near-ties (motion, segments, strata) also report where those are, so that a test can
skip or enumerate them instead of demanding an exact match there.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

F32 = np.float32
NEAR = 1e-5  # SPEC: near-tie width, relative for values above 1


# ----------------------------------------------------------------------------- section 0


def f32(x) -> np.float32:
    return np.float32(x)


def effective_valid(tokens, valid=None) -> np.ndarray:
    """`valid` and finite: a valid token that is not finite is padding (SPEC, notation)."""
    tokens = np.asarray(tokens)
    if valid is None:
        valid = np.ones(tokens.shape[:3], bool)
    finite = np.all(np.isfinite(tokens), axis=-1)
    return np.asarray(valid, bool) & finite


def as_f32_tokens(tokens, valid) -> np.ndarray:
    """Tokens in float32 with padding zeroed by `where` (only ever read at valid tokens)."""
    v = np.asarray(tokens).astype(np.float32)
    return np.where(valid[..., None], v, F32(0))


def norm(a) -> np.float32:
    a = np.asarray(a, np.float32)
    return f32(np.sqrt(np.sum(a * a, dtype=np.float32)))


def cos(a, b) -> np.float32:
    """`a.b / (max(|a|, 1e-6) * max(|b|, 1e-6))` in float32 (SPEC 0)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    dot = f32(np.sum(a * b, dtype=np.float32))
    den = f32(max(norm(a), F32(1e-6)) * max(norm(b), F32(1e-6)))
    return f32(dot / den)


def cos_dist(a, b) -> np.float32:
    """`1 - cos`, clamped to [0, 2]."""
    return f32(min(max(f32(F32(1) - cos(a, b)), F32(0)), F32(2)))


def window(valid, t, h, w, radius):
    """Valid `(t', h', w')` with |t'-t|<=rt, |h'-h|<=rh, |w'-w|<=rw inside the grid."""
    T, H, W = valid.shape
    rt, rh, rw = radius
    out = []
    for tt in range(max(0, t - rt), min(T, t + rt + 1)):
        for hh in range(max(0, h - rh), min(H, h + rh + 1)):
            for ww in range(max(0, w - rw), min(W, w + rw + 1)):
                if valid[tt, hh, ww]:
                    out.append((tt, hh, ww))
    return out


def quantile(x, q, provenance=False):
    """SPEC 0 quantile over the given (valid) values, float32.

    Returns `(value, exact)` where `exact` says the result is an exact order statistic
    (`g == 0` or `x_i == x_{i+1}`), i.e. a value every implementation gets bit-for-bit.
    With `provenance=True` also returns the inputs `(x_i, x_{i+1}, g)` the value is a
    deterministic function of (equal provenance: equal value in every implementation).
    """
    xs = np.sort(np.asarray(x, np.float32).ravel())
    n = xs.size
    assert n >= 1
    pos = f32(f32(q) * f32(n - 1))
    i = int(np.floor(pos))
    g = f32(pos - f32(i))
    if i >= n - 1:
        res = (xs[n - 1], True, (float(xs[n - 1]),))
    elif g == 0 or xs[i] == xs[i + 1]:
        res = (xs[i], True, (float(xs[i]),))
    else:
        val = f32(xs[i] + f32(f32(xs[i + 1] - xs[i]) * g))
        res = (val, False, (float(xs[i]), float(xs[i + 1]), float(g)))
    return res if provenance else res[:2]


def median(x):
    return quantile(x, 0.5)[0]


def minmax(x, valid, constant_value):
    """`(x - min) / (max - min)` over valid tokens, float32; constant -> `constant_value`."""
    x = np.asarray(x, np.float32)
    out = np.zeros(x.shape, np.float32)
    if not valid.any():
        return out
    vals = x[valid]
    mn, mx = vals.min(), vals.max()
    rng = f32(mx - mn)
    if rng <= f32(F32(1e-6) * max(F32(1), abs(mx))):
        out[valid] = F32(constant_value)
        return out
    out[valid] = ((vals - mn) / rng).astype(np.float32)
    return out


def round_half_up(x) -> int:
    return math.floor(x + 0.5)


def share(Q: int, C: int, n: int) -> int:
    """`Q * C / n` rounded half up, exact integers."""
    return (2 * Q * C + n) // (2 * n)


def near(a, b) -> bool:
    """Two *different* floats within 1e-5 (relative above 1)."""
    a, b = float(a), float(b)
    if a == b:
        return False
    return abs(a - b) <= NEAR * max(1.0, abs(a), abs(b))


# ----------------------------------------------------------------------------- section 1


def motion(tokens, valid, radius=1, stay_bias=1e-4):
    """Motion vectors (T,H,W,2) int32, has_candidate (T,H,W) bool, near-tie mask (T,H,W).

    `near_tie[t,h,w]` marks tokens whose best candidate has a rival with a *different* score
    within 1e-5 (a genuine near-tie: another implementation may pick the rival). Rivals whose
    vector is bit-identical to the winner's get the same cosine in every implementation, so
    the tie rules (stay bias, then row-major order) decide them exactly.
    """
    valid = np.asarray(valid, bool)
    v = as_f32_tokens(tokens, valid)
    T, H, W = valid.shape
    mv = np.zeros((T, H, W, 2), np.int32)
    hc = np.zeros((T, H, W), bool)
    tie = np.zeros((T, H, W), bool)
    bias = f32(stay_bias)
    for t in range(1, T):
        for h in range(H):
            for w in range(W):
                if not valid[t, h, w]:
                    continue
                cands = []  # (score, dh, dw, vector), row-major order of (dh, dw)
                for dh in range(-radius, radius + 1):
                    for dw in range(-radius, radius + 1):
                        hh, ww = h + dh, w + dw
                        if 0 <= hh < H and 0 <= ww < W and valid[t - 1, hh, ww]:
                            s = cos(v[t, h, w], v[t - 1, hh, ww])
                            if dh == 0 and dw == 0:
                                s = f32(s + bias)
                            cands.append((s, dh, dw, v[t - 1, hh, ww]))
                if not cands:
                    continue
                hc[t, h, w] = True
                best = cands[0]
                for c in cands[1:]:
                    if c[0] > best[0]:  # strict: ties go to the first in row-major order
                        best = c
                mv[t, h, w] = (best[1], best[2])
                for c in cands:
                    if c is best or np.array_equal(c[3], best[3]):
                        continue
                    if near(c[0], best[0]) or (c[0] == best[0]):
                        tie[t, h, w] = True
    return mv, hc, tie


def dynamic_saliency(motion_vectors, valid, window_radius=(1, 1, 1)):
    """S_M (T,H,W) float32: mean of |mv| over the window, via exact per-d counts (SPEC 1)."""
    valid = np.asarray(valid, bool)
    mvv = np.asarray(motion_vectors).astype(np.int64)
    d = mvv[..., 0] ** 2 + mvv[..., 1] ** 2
    T, H, W = valid.shape
    out = np.zeros((T, H, W), np.float32)
    for t in range(T):
        for h in range(H):
            for w in range(W):
                if not valid[t, h, w]:
                    continue
                win = window(valid, t, h, w, window_radius)
                counts = {}
                for j in win:
                    counts[int(d[j])] = counts.get(int(d[j]), 0) + 1
                total = F32(0)
                for dd in sorted(counts):
                    total = f32(total + f32(f32(counts[dd]) * np.sqrt(f32(dd))))
                out[t, h, w] = f32(total / f32(len(win)))
    return out


# ----------------------------------------------------------------------------- sections 2, 3


def _blend(raw, count, valid):
    """`c * raw + (1 - c) * median(raw)` with `c = minmax(log(1 + count))` (Eqs. 3, 4)."""
    T, H, W = valid.shape
    out = np.zeros((T, H, W), np.float32)
    if not valid.any():
        return out
    logc = np.where(valid, np.log(F32(1) + count.astype(np.float32)), F32(0)).astype(np.float32)
    c = minmax(logc, valid, 1.0)
    med = median(raw[valid])
    blended = (c * raw + (F32(1) - c) * med).astype(np.float32)
    out[valid] = blended[valid]
    return out


def regional_saliency(tokens, valid, center=(1, 1, 1), surround=(1, 2, 2)):
    """S_R (T,H,W) float32 (SPEC 2)."""
    valid = np.asarray(valid, bool)
    v = as_f32_tokens(tokens, valid)
    T, H, W = valid.shape
    raw = np.zeros((T, H, W), np.float32)
    count = np.zeros((T, H, W), np.int64)
    for t in range(T):
        for h in range(H):
            for w in range(W):
                if not valid[t, h, w]:
                    continue
                C = window(valid, t, h, w, center)
                Cset = set(C)
                S = [j for j in window(valid, t, h, w, surround) if j not in Cset]
                count[t, h, w] = len(S)
                if not S:
                    continue
                mc = (np.sum([v[j] for j in C], axis=0, dtype=np.float32) / f32(len(C)))
                ms = (np.sum([v[j] for j in S], axis=0, dtype=np.float32) / f32(len(S)))
                raw[t, h, w] = cos_dist(mc.astype(np.float32), ms.astype(np.float32))
    return _blend(raw, count, valid)


def focal_saliency(tokens, valid, temperature=1.0):
    """S_F (T,H,W) float32 (SPEC 3)."""
    valid = np.asarray(valid, bool)
    v = as_f32_tokens(tokens, valid)
    T, H, W = valid.shape
    raw = np.zeros((T, H, W), np.float32)
    count = np.zeros((T, H, W), np.int64)
    temp = f32(temperature)
    for t in range(T):
        for h in range(H):
            for w in range(W):
                if not valid[t, h, w]:
                    continue
                P = [j for j in window(valid, t, h, w, (0, 1, 1)) if j != (t, h, w)]
                count[t, h, w] = len(P)
                if not P:
                    continue
                z = np.array([cos(v[t, h, w], v[j]) / temp for j in P], np.float32)
                e = np.exp(z - z.max()).astype(np.float32)
                wts = (e / np.sum(e, dtype=np.float32)).astype(np.float32)
                vhat = np.sum([wts[k] * v[j] for k, j in enumerate(P)], axis=0,
                              dtype=np.float32)
                raw[t, h, w] = cos_dist(v[t, h, w], vhat.astype(np.float32))
    return _blend(raw, count, valid)


# ----------------------------------------------------------------------------- section 4


def segments(S_M, valid, abs_threshold=0.6, rel_quantile=0.9):
    """Segment id per frame (T,) int32 (-1 for frames with no valid token) and the list of
    frames whose start decision is a genuine near-tie (SPEC 4 / first section)."""
    S_M = np.asarray(S_M, np.float32)
    valid = np.asarray(valid, bool)
    T = valid.shape[0]
    frames = [t for t in range(T) if valid[t].any()]
    seg = np.full((T,), -1, np.int32)
    if not frames:
        return seg, []
    P, P_exact, P_prov = [], [], []
    for t in frames:
        p, ex, prov = quantile(S_M[t][valid[t]], 0.95, provenance=True)
        P.append(p)
        P_exact.append(ex)
        P_prov.append(prov)
    n = len(frames)
    dP = [F32(0)] + [f32(abs(f32(P[k] - P[k - 1]))) for k in range(1, n)]
    # Provenance of dP[k]: `|a - b|` of two paces, each a deterministic function of its
    # quantile inputs. dP values with equal keys are equal in every implementation (an
    # exact order statistic is itself; equal quantile inputs give dP = 0 exactly).
    def key(k):
        if k == 0 or P_prov[k] == P_prov[k - 1] or (P_exact[k] and P_exact[k - 1]):
            return ("value", float(dP[k]))  # bit-for-bit everywhere
        return ("pair", frozenset((P_prov[k], P_prov[k - 1])))
    dP_key = [key(k) for k in range(n)]
    T_rel, T_rel_exact = quantile(dP, rel_quantile)
    # The comparison dP[k] > T_rel is bit-for-bit when T_rel is an order statistic and all
    # dP that tie or nearly tie it share one provenance (then they move together).
    close = {dP_key[j] for j in range(n) if dP[j] == T_rel or near(dP[j], T_rel)}
    T_rel_key = next(iter(close)) if (T_rel_exact and len(close) == 1) else None
    A = f32(abs_threshold)

    starts, ambiguous = [], []
    for k in range(n):
        if k == 0:
            starts.append(True)
            continue
        a = bool(P[k] > A)
        r = bool(dP[k] > T_rel)
        amb_a = near(P[k], A) or (P[k] == A and not P_exact[k])
        amb_r = near(dP[k], T_rel) or (dP[k] == T_rel and dP_key[k] != T_rel_key)
        # The decision is ambiguous if a near-tied criterion can flip the OR.
        if (amb_a and not r) or (amb_r and not a) or (amb_a and amb_r):
            ambiguous.append(frames[k])
        starts.append(a or r)
    seg_id = -1
    for k, t in enumerate(frames):
        if starts[k]:
            seg_id += 1
        seg[t] = seg_id
    return seg, ambiguous


def segments_from_starts(valid, start_frames):
    """Segment ids given the set of starting (valid) frames; helper for near-tie variants."""
    valid = np.asarray(valid, bool)
    T = valid.shape[0]
    seg = np.full((T,), -1, np.int32)
    sid = -1
    first = True
    for t in range(T):
        if not valid[t].any():
            continue
        if first or t in start_frames:
            sid += 1
            first = False
        seg[t] = sid
    return seg


# ----------------------------------------------------------------------------- section 7


def ratio_fraction(retain_ratio) -> tuple[int, int]:
    fr = Fraction(float(retain_ratio)).limit_denominator(10_000)
    return fr.numerator, fr.denominator


def budget(n: int, retain_ratio) -> int:
    """`max(1, share(p, n, q))` for n >= 1, 0 for n = 0 (SPEC 7)."""
    n = int(n)
    if n <= 0:
        return 0
    p, q = ratio_fraction(retain_ratio)
    return max(1, share(p, n, q))


def split_quota(Q: int, sizes) -> list[int]:
    """Cumulative rounding of a parent quota `Q` over children of `sizes` (in order)."""
    sizes = [int(s) for s in sizes]
    n = sum(sizes)
    if n == 0:
        assert Q == 0
        return [0] * len(sizes)
    assert 0 <= Q <= n
    out, C_prev = [], 0
    for s in sizes:
        C = C_prev + s
        out.append(share(Q, C, n) - share(Q, C_prev, n))
        C_prev = C
    assert sum(out) == Q and all(0 <= a <= s for a, s in zip(out, sizes))
    return out


# ----------------------------------------------------------------------------- sections 5, 8, 9


def weighted_scores(saliency, valid, factor_weights=(1.0, 1.0, 1.0)):
    """`s_f = w_f * minmax(S_f)` (constant -> 0), (T,H,W,3) float32 (SPEC 5)."""
    valid = np.asarray(valid, bool)
    sal = np.asarray(saliency, np.float32)
    out = np.zeros(sal.shape, np.float32)
    for f in range(3):
        n_f = minmax(sal[..., f], valid, 0.0)
        out[..., f] = (f32(factor_weights[f]) * n_f).astype(np.float32)
    return out


def strata(saliency, valid, factor_weights=(1.0, 1.0, 1.0)):
    """Stratum per token (argmax of weighted scores, ties to the lower factor) and a dict
    {flat index: tuple of alternative strata} for tokens whose two largest weighted scores
    are a genuine near-tie (different values within 1e-5, or equal values that are not both
    robustly 0: an exact 0 comes from a zero weight or the minimum token in every
    implementation, while e.g. two normalised maxima of 1 may be 1 - ulp in another)."""
    valid = np.asarray(valid, bool)
    s = weighted_scores(saliency, valid, factor_weights)
    T, H, W = valid.shape
    st = np.full((T, H, W), -1, np.int32)
    amb = {}
    for t in range(T):
        for h in range(H):
            for w in range(W):
                if not valid[t, h, w]:
                    continue
                x = s[t, h, w]
                k = 0
                for f in (1, 2):
                    if x[f] > x[k]:
                        k = f
                st[t, h, w] = k
                alts = {k}
                for f in range(3):
                    if f == k:
                        continue
                    if near(x[f], x[k]) or (x[f] == x[k] and x[k] != 0):
                        alts.add(f)
                if len(alts) > 1:
                    amb[(t * H + h) * W + w] = tuple(sorted(alts))
    return st, amb


def static_mask(motion_vectors, has_candidate, valid):
    """Tokens coalescing drops: valid, had a candidate and mv == (0, 0) (SPEC 9)."""
    mvv = np.asarray(motion_vectors)
    return (np.asarray(valid, bool) & np.asarray(has_candidate, bool)
            & (mvv[..., 0] == 0) & (mvv[..., 1] == 0))


def kept_set(saliency, segment, cluster, valid, motion_vectors, has_candidate, *,
             retain_ratio=0.25, num_clusters=20, factor_weights=(1.0, 1.0, 1.0),
             coalesce=True, refill=False, stratum=None):
    """Keep mask (T,H,W) bool from sections 5, 7, 8, 9, given the previous stages' outputs
    (raw saliency, per-frame segment ids, cluster labels, motion, has_candidate).

    `stratum` overrides the per-token stratum (to enumerate near-tie alternatives).
    """
    valid = np.asarray(valid, bool)
    sal = np.asarray(saliency, np.float32)
    segment = np.asarray(segment)
    cluster = np.asarray(cluster)
    T, H, W = valid.shape
    if stratum is None:
        stratum, _ = strata(sal, valid, factor_weights)
    static = static_mask(motion_vectors, has_candidate, valid) if coalesce else \
        np.zeros_like(valid)
    eligible = valid & ~static if refill else valid.copy()

    N_v = int(valid.sum())
    K_v = budget(N_v, retain_ratio)
    Q_video = min(K_v, int(eligible.sum())) if refill else K_v

    seg_tok = np.broadcast_to(segment[:, None, None], (T, H, W))
    n_seg = int(segment.max()) + 1 if (segment >= 0).any() else 0
    seg_sizes = [int((eligible & (seg_tok == s)).sum()) for s in range(n_seg)]
    seg_quota = split_quota(Q_video, seg_sizes)

    keep = np.zeros((T, H, W), bool)
    for s in range(n_seg):
        in_seg = eligible & (seg_tok == s)
        labels = cluster[in_seg]
        assert labels.size == 0 or (labels.min() >= 0 and labels.max() < num_clusters)
        cl_sizes = [int((in_seg & (cluster == c)).sum()) for c in range(num_clusters)]
        cl_quota = split_quota(seg_quota[s], cl_sizes)
        for c in range(num_clusters):
            in_cl = in_seg & (cluster == c)
            st_sizes = [int((in_cl & (stratum == f)).sum()) for f in range(3)]
            st_quota = split_quota(cl_quota[c], st_sizes)
            for f in range(3):
                if st_quota[f] == 0:
                    continue
                idx = np.argwhere(in_cl & (stratum == f))
                order = sorted(
                    (((int(t) * H + int(h)) * W + int(w)), sal[t, h, w, f])
                    for t, h, w in idx)
                # largest raw saliency first, ties to the lower flat index
                order.sort(key=lambda fv: (-float(fv[1]), fv[0]))
                for flat, _ in order[: st_quota[f]]:
                    keep.flat[flat] = True
    if coalesce and not refill:
        keep &= ~static
    assert not (keep & ~valid).any()
    return keep


def kept_set_variants(saliency, segment, cluster, valid, motion_vectors, has_candidate,
                      max_variants=81, **cfg):
    """All keep masks the near-tie strata allow, or None if there are too many variants."""
    st, amb = strata(saliency, valid, cfg.get("factor_weights", (1.0, 1.0, 1.0)))
    keys = sorted(amb)
    n_var = 1
    for k in keys:
        n_var *= len(amb[k])
    if n_var > max_variants:
        return None
    out = []
    for combo in itertools.product(*[amb[k] for k in keys]):
        st2 = st.copy()
        for k, f in zip(keys, combo):
            st2.flat[k] = f
        out.append(kept_set(saliency, segment, cluster, valid, motion_vectors,
                            has_candidate, stratum=st2, **cfg))
    return out


def indices_from_mask(keep, K):
    flat = np.flatnonzero(np.asarray(keep).ravel()).astype(np.int32)
    pad = np.full((K - flat.size,), keep.size, np.int32)
    return np.concatenate([flat, pad])
