"""Independent numpy reference of docs/algorithm.md §0-9, held against `tfs_prune` by the
tests and by the GPU acceptance run (`experiments/gpu_acceptance.py`).

Written straight from `docs/algorithm.md` (§6 pins the k-means++ law the paper leaves open),
without reading the library, for clarity over speed: explicit Python loops over tokens (use
it on tiny clips only). Float32 wherever the algorithm says float32; integer steps (budget,
quotas, ranks) in exact Python ints. It imports numpy only.

Every stage takes the previous stage's outputs, so a test can feed it the library's own
output of the stage before (the algorithm's "stage by stage" check). k-means (§5-6) runs here
too, on the caller's k-means++ uniforms, so cluster labels are checked, not trusted. Stages
whose decisions can be genuine near-ties (motion, segments, strata) also report where those are, so that a test can
skip or enumerate them instead of demanding an exact match there.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

F32 = np.float32
NEAR = 1e-5  # algorithm §Agreement: near-tie width, relative for values above 1


# ----------------------------------------------------------------------------- section 0


def f32(x) -> np.float32:
    return np.float32(x)


def effective_valid(tokens, valid=None) -> np.ndarray:
    """`valid` and finite: a valid token that is not finite is padding (algorithm §Notation)."""
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
    """`a.b / (max(|a|, 1e-6) * max(|b|, 1e-6))` in float32 (algorithm §0)."""
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
    """Algorithm §0 quantile over the given (valid) values, float32.

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
    """S_M (T,H,W) float32: mean of |mv| over the window, via exact per-d counts (algorithm §1)."""
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
    """S_R (T,H,W) float32 (algorithm §2)."""
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
    """S_F (T,H,W) float32 (algorithm §3)."""
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
    frames whose start decision is a genuine near-tie (algorithm §4 / §Agreement)."""
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
    """`max(1, share(p, n, q))` for n >= 1, 0 for n = 0 (algorithm §7)."""
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
    """`s_f = w_f * minmax(S_f)` (constant -> 0), (T,H,W,3) float32 (algorithm §5)."""
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


# ----------------------------------------------------------------------------- sections 5, 6
# k-means++ by the exponential race of docs/algorithm.md §6 (algorithm §6 leaves the law open), on
# the caller's uniforms, then Lloyd in float64. A segment is ambiguous, and its labels are
# not compared, when a race is won by a margin under `NEAR` or an assignment's two nearest
# (distinct) centres are within `NEAR` in squared distance: another float order may go the
# other way there.


def clustering_features(saliency, segment, valid, factor_weights=(1.0, 1.0, 1.0)):
    """`(s_M, s_R, s_F, t_n, h_n, w_n)` per token, (T,H,W,6) float32, zeros at padding
    (algorithm §5)."""
    valid = np.asarray(valid, bool)
    segment = np.asarray(segment)
    T, H, W = valid.shape
    out = np.zeros((T, H, W, 6), np.float32)
    out[..., :3] = weighted_scores(saliency, valid, factor_weights)
    for t in range(T):
        if segment[t] < 0:
            continue
        span = np.flatnonzero(segment == segment[t])
        out[t, :, :, 3] = f32(t - span[0]) / f32(max(span[-1] - span[0], 1))
    out[..., 4] = (np.arange(H, dtype=np.float32) / f32(max(H - 1, 1)))[:, None]
    out[..., 5] = (np.arange(W, dtype=np.float32) / f32(max(W - 1, 1)))[None, :]
    return np.where(valid[..., None], out, F32(0))


def _near_rival(values, best, x, winner) -> bool:
    """Another entry of `values` within `NEAR` of `values[best]` whose row of `x` differs
    from `x[winner]` (a rival with equal features gives the same centroid: no ambiguity)."""
    close = np.flatnonzero(np.abs(values - values[best]) < NEAR)
    return any(not np.array_equal(x[i], x[winner]) for i in close if i != best)


def kmeans_plus_plus(x, uniforms, k):
    """k-means++ seeds of one segment by the exponential race (docs/algorithm.md §6).

    Args:
      x: `(n, 6)` float64 features of the segment's members, in flat-index order.
      uniforms: `(k, n)` the members' uniforms `u` of draws `0 .. k-1`.
      k: number of centroids.
    Returns:
      `(centroids (k, 6) float64, ambiguous)`: draw `j` takes the member minimising
      `log(-log u) - log(D^2)` among those with `D^2 > 0` (`D^2 = 1` at the first draw;
      if every `D^2` is 0, the smallest `log(-log u)`), the first on a tie; `ambiguous`
      when a race is won by less than `NEAR`.
    """
    d2 = np.ones(len(x))
    centroids, ambiguous = np.zeros((k, 6)), False
    for j in range(k):
        with np.errstate(divide="ignore"):
            race = np.log(-np.log(np.asarray(uniforms[j], np.float64)))
            score = race - np.log(d2) if (d2 > 0).any() else race
        score = np.where((d2 > 0) | ~(d2 > 0).any(), score, np.inf)
        winner = int(np.argmin(score))
        ambiguous |= _near_rival(score, winner, x, winner)
        centroids[j] = x[winner]
        d2 = np.minimum(d2 if j else np.inf, np.sum((x - x[winner]) ** 2, axis=1))
    return centroids, ambiguous


def _assign(x, centroids):
    """Nearest centroid per row (ties to the lower index) and whether some row's two
    nearest distinct centres are within `NEAR` in squared distance."""
    d = np.sum((x[:, None, :] - centroids[None]) ** 2, axis=-1)
    labels = np.argmin(d, axis=1)
    ambiguous = False
    if d.shape[1] < 2:
        return labels, ambiguous
    for i in np.flatnonzero(np.sort(d, axis=1)[:, 1:2].ravel() - d.min(axis=1) < NEAR):
        ambiguous |= _near_rival(d[i], labels[i], centroids, labels[i])
    return labels, ambiguous


def lloyd(x, centroids, iters):
    """Algorithm §6's Lloyd loop in float64: `iters` times assign then move each centroid to the
    mean of its rows (an empty one stays); the labels are the assignment to the final
    centroids. Returns `(labels (n,), ambiguous)`."""
    c = np.array(centroids, np.float64)
    labels, ambiguous = _assign(x, c)
    for _ in range(iters):
        for j in range(len(c)):
            if (labels == j).any():
                c[j] = x[labels == j].mean(axis=0)
        labels, amb = _assign(x, c)
        ambiguous |= amb
    return labels, ambiguous


def cluster_labels(saliency, segment, valid, uniforms, *, num_clusters=20, kmeans_iters=20,
                   factor_weights=(1.0, 1.0, 1.0)):
    """Algorithm §5-6 from the library's saliency and segments and the k-means++ uniforms.

    Args:
      uniforms: `(num_clusters, T, H, W)` the uniforms of draws `0 .. k-1`
        (`jax.random.uniform(jax.random.fold_in(key, j), (T, H, W))`, docs/algorithm.md §6).
    Returns:
      `(labels (T,H,W) int32 with -1 at padding, ambiguous segment ids, segment count)`.
    """
    valid = np.asarray(valid, bool)
    segment = np.asarray(segment)
    x = clustering_features(saliency, segment, valid, factor_weights).reshape(-1, 6)
    seg_tok = np.broadcast_to(segment[:, None, None], valid.shape).ravel()
    u = np.asarray(uniforms).reshape(num_clusters, -1)
    labels = np.full(valid.size, -1, np.int32)
    n_seg = int(segment.max()) + 1 if (segment >= 0).any() else 0
    ambiguous = []
    for s in range(n_seg):
        members = np.flatnonzero(valid.ravel() & (seg_tok == s))
        xs = x[members].astype(np.float64)
        seeds, amb_seed = kmeans_plus_plus(xs, u[:, members], num_clusters)
        labels[members], amb_lloyd = lloyd(xs, seeds, kmeans_iters)
        if amb_seed or amb_lloyd:
            ambiguous.append(s)
    return labels.reshape(valid.shape), ambiguous, n_seg


def check_clusters(tokens, valid, config, out) -> list[str]:
    """Algorithm §5-6 from the library's own saliency and segments, on the uniforms in
    `out["kmeans_uniforms"]`: the labels of every segment that is not ambiguous must be
    the reference's exactly (labels are compared as they are: sections 7-8 read them by
    number)."""
    cfg = full_config(config)
    if "kmeans_uniforms" not in out:
        return ["clusters: the check needs out['kmeans_uniforms'], the k-means++ uniforms"]
    valid = effective_valid(tokens, valid)
    want, ambiguous, _ = cluster_labels(
        out["saliency"], out["segment"], valid, out["kmeans_uniforms"],
        num_clusters=cfg["num_clusters"], kmeans_iters=cfg["kmeans_iters"],
        factor_weights=cfg["factor_weights"])
    got = np.asarray(out["cluster"])
    compared = ~np.isin(np.broadcast_to(np.asarray(out["segment"])[:, None, None], got.shape),
                        ambiguous)
    bad = compared & (got != want)
    if not bad.any():
        return []
    at = _first(bad)
    return [f"clusters: {int(bad.sum())} labels differ outside the {len(ambiguous)} ambiguous "
            f"segments, first at {at}: lib {got[at]} ref {want[at]}"]


def static_mask(motion_vectors, has_candidate, valid):
    """Tokens coalescing drops: valid, had a candidate and mv == (0, 0) (algorithm §9)."""
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


# ----------------------------------------------------------------------------- stage checks

# Algorithm §10's defaults: a check reads its config as these, overridden by the caller's fields.
DEFAULTS = dict(retain_ratio=0.25, num_clusters=20, kmeans_iters=20, motion_radius=1,
                motion_window=(1, 1, 1), center_radius=(1, 1, 1), surround_radius=(1, 2, 2),
                coalesce=True, refill=False, factor_weights=(1.0, 1.0, 1.0), stay_bias=1e-4,
                focal_temperature=1.0, abs_threshold=0.6, rel_quantile=0.9)
SAL_ATOL = 1e-4  # algorithm §Agreement: saliency maps agree to 1e-4 absolute
MAX_SEGMENT_NEAR_TIES = 8  # near-tie segment starts enumerated (2**8 options at most)
MAX_KEPT_VARIANTS = 81  # near-tie strata combinations enumerated
RESULT_FIELDS = ("indices", "slot_valid", "keep_mask", "num_kept", "saliency", "motion", "segment",
                 "cluster", "has_candidate")


def full_config(config=None) -> dict:
    """Algorithm §10's defaults overridden by `config` (a dict of `TFSConfig` fields)."""
    cfg = dict(DEFAULTS)
    cfg.update(config or {})
    return cfg


def _first(mask):
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _close(name, got, want, atol):
    """Failures of `|got - want| <= atol` (NaN in either fails)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return [f"{name}: shape {got.shape}, reference {want.shape}"]
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(got.astype(np.float64) - want.astype(np.float64)) <= atol)
    if not bad.any():
        return []
    at = _first(bad)
    return [f"{name}: {int(bad.sum())} values off by more than {atol}, first at {at}: "
            f"lib {got[at]!r} ref {want[at]!r}"]


def check_motion(tokens, valid, config, out) -> list[str]:
    """Algorithm §1: has_candidate exactly, motion vectors exactly except at genuine near-ties,
    zero at padding and within the radius."""
    cfg = full_config(config)
    valid = effective_valid(tokens, valid)
    mv, hc, tie = motion(tokens, valid, cfg["motion_radius"], cfg["stay_bias"])
    got, failures = np.asarray(out["motion"]), []
    if not np.array_equal(out["has_candidate"], hc):
        diff = np.asarray(out["has_candidate"]) != hc
        failures.append(f"motion: has_candidate differs at {int(diff.sum())} tokens, first "
                        f"at {_first(diff)}")
    bad = ~tie & np.any(got != mv, axis=-1)
    if bad.any():
        at = _first(bad)
        failures.append(f"motion: {int(bad.sum())} motion vectors differ, first at {at}: "
                        f"lib {got[at]} ref {mv[at]}")
    if not np.all(got[~valid] == 0):
        failures.append("motion: nonzero motion at padding")
    if not np.all(np.abs(got) <= cfg["motion_radius"]):
        failures.append(f"motion: a vector outside radius {cfg['motion_radius']}")
    return failures


def check_dynamic(tokens, valid, config, out) -> list[str]:
    """Algorithm §1: S_M from the library's own motion vectors, to `SAL_ATOL`."""
    cfg = full_config(config)
    valid = effective_valid(tokens, valid)
    want = dynamic_saliency(out["motion"], valid, cfg["motion_window"])
    return _close("S_M", np.asarray(out["saliency"])[..., 0], want, SAL_ATOL)


def check_regional(tokens, valid, config, out) -> list[str]:
    """Algorithm §2: S_R to `SAL_ATOL`."""
    cfg = full_config(config)
    valid = effective_valid(tokens, valid)
    want = regional_saliency(tokens, valid, cfg["center_radius"], cfg["surround_radius"])
    return _close("S_R", np.asarray(out["saliency"])[..., 1], want, SAL_ATOL)


def check_focal(tokens, valid, config, out) -> list[str]:
    """Algorithm §3: S_F to `SAL_ATOL`."""
    cfg = full_config(config)
    valid = effective_valid(tokens, valid)
    want = focal_saliency(tokens, valid, cfg["focal_temperature"])
    return _close("S_F", np.asarray(out["saliency"])[..., 2], want, SAL_ATOL)


def segment_options(valid, seg, ambiguous):
    """Every segmentation reachable from `seg` by flipping the start decisions of the
    near-tie frames `ambiguous` (2**len(ambiguous) options, `seg` first)."""
    starts = {t for t in range(len(seg)) if seg[t] >= 0 and (
        t == 0 or seg[t] != seg[:t][seg[:t] >= 0].max(initial=-1))}
    options = []
    for flips in range(1 << len(ambiguous)):
        s2 = set(starts)
        for j, t in enumerate(ambiguous):
            if flips >> j & 1:
                s2 ^= {t}
        options.append(segments_from_starts(valid, s2))
    return options


def check_segments(tokens, valid, config, out) -> list[str]:
    """Algorithm §4 from the library's own S_M: exact, or one of the near-tie alternatives (at
    most `MAX_SEGMENT_NEAR_TIES` near-tie frames)."""
    cfg = full_config(config)
    valid = effective_valid(tokens, valid)
    got = np.asarray(out["segment"])
    seg, amb = segments(np.asarray(out["saliency"])[..., 0], valid, cfg["abs_threshold"],
                        cfg["rel_quantile"])
    if not amb:
        return [] if np.array_equal(got, seg) else [
            f"segments: lib {got.tolist()} ref {seg.tolist()}"]
    if len(amb) > MAX_SEGMENT_NEAR_TIES:
        return [f"segments: too many near-tie frames to enumerate: {amb}"]
    if any(np.array_equal(got, o) for o in segment_options(valid, seg, amb)):
        return []
    return [f"segments: lib {got.tolist()} ref {seg.tolist()}, near-tie frames {amb}"]


def kept_kwargs(config) -> dict:
    cfg = full_config(config)
    return {k: cfg[k] for k in ("retain_ratio", "num_clusters", "factor_weights", "coalesce",
                                "refill")}


def check_kept(tokens, valid, config, out, *, max_variants=MAX_KEPT_VARIANTS) -> list[str]:
    """Algorithm §5, 7-9 from the library's own saliency, segments, clusters and motion: the kept
    set must be one of the near-tie strata variants. More than `max_variants` variants is a
    failure: the set could not be checked."""
    valid = effective_valid(tokens, valid)
    variants = kept_set_variants(out["saliency"], out["segment"], out["cluster"], valid,
                                 out["motion"], out["has_candidate"],
                                 max_variants=max_variants, **kept_kwargs(config))
    if variants is None:
        return [f"kept set: more than {max_variants} near-tie strata variants to enumerate"]
    lib = np.asarray(out["keep_mask"])
    if any(np.array_equal(lib, v) for v in variants):
        return []
    v = variants[0]
    extra, missing = np.argwhere(lib & ~v), np.argwhere(v & ~lib)
    return [f"kept set differs: lib keeps {lib.sum()} ref {v.sum()}; "
            f"lib-only {extra[:5].tolist()} ref-only {missing[:5].tolist()} "
            f"({len(variants)} near-tie variants)"]


def check_layout(tokens, valid, config, out) -> list[str]:
    """Algorithm §11: shapes and dtypes, `indices`/`valid`/`num_kept` agree with `keep_mask`,
    the count kept (algorithm §7, 9), and the values at padding."""
    cfg = full_config(config)
    valid = effective_valid(tokens, valid)
    T, H, W = valid.shape
    K = budget(T * H * W, cfg["retain_ratio"])
    K_v = budget(int(valid.sum()), cfg["retain_ratio"])
    o = {f: np.asarray(out[f]) for f in RESULT_FIELDS}
    expected = {"indices": ((K,), np.int32), "slot_valid": ((K,), np.bool_),
                "num_kept": ((), np.int32), "saliency": ((T, H, W, 3), np.float32),
                "motion": ((T, H, W, 2), np.int32), "segment": ((T,), np.int32),
                "cluster": ((T, H, W), np.int32), "keep_mask": ((T, H, W), np.bool_),
                "has_candidate": ((T, H, W), np.bool_)}
    failures = [f"layout: {f} is {o[f].dtype}{list(o[f].shape)}, expected "
                f"{np.dtype(dt)}{list(shape)}"
                for f, (shape, dt) in expected.items()
                if o[f].shape != shape or o[f].dtype != dt]
    if failures:
        return failures
    keep, nk = o["keep_mask"], int(o["num_kept"])

    def need(ok, what):
        if not ok:
            failures.append(f"layout: {what}")

    need(nk == int(keep.sum()), f"num_kept {nk} != keep_mask.sum() {int(keep.sum())}")
    need(np.array_equal(o["indices"], indices_from_mask(keep, K)),
         "indices are not keep_mask's flat indices, ascending, then T*H*W")
    need(np.array_equal(o["slot_valid"], np.arange(K) < nk),
         "slot_valid is not arange(K) < num_kept")
    need(not (keep & ~valid).any(), "a padding token is kept")
    if cfg["refill"]:
        static = static_mask(o["motion"], o["has_candidate"], valid)
        need(nk == min(K_v, int((valid & ~static).sum())),
             f"refill keeps {nk}, expected min(K_v, non-static tokens)")
    elif cfg["coalesce"]:
        need(nk <= K_v, f"keeps {nk} > K_v = {K_v}")
    else:
        need(nk == K_v, f"keeps {nk} != K_v = {K_v} without coalescing")
    need(np.all(o["saliency"][~valid] == 0), "nonzero saliency at padding")
    need(np.all(np.isfinite(o["saliency"])), "non-finite saliency")
    need(not o["has_candidate"][~valid].any(), "has_candidate at padding")
    need(np.all(o["cluster"][~valid] == -1), "cluster label other than -1 at padding")
    lab = o["cluster"][valid]
    need(lab.size == 0 or (lab.min() >= 0 and lab.max() < cfg["num_clusters"]),
         "cluster label outside [0, num_clusters)")
    frame_valid = valid.any(axis=(1, 2))
    need(np.all(o["segment"][~frame_valid] == -1), "segment other than -1 at an empty frame")
    need(np.all(o["segment"][frame_valid] >= 0), "segment -1 at a frame with valid tokens")
    return failures


STAGE_CHECKS = {
    "motion": check_motion,
    "dynamic": check_dynamic,
    "regional": check_regional,
    "focal": check_focal,
    "segments": check_segments,
    "clusters": check_clusters,
    "kept": check_kept,
    "layout": check_layout,
}


def check_stages(tokens, valid, config, out, stages=tuple(STAGE_CHECKS)) -> list[str]:
    """A `tfs_prune` result against this reference, stage by stage (algorithm §Agreement).

    Args:
      tokens: `(T, H, W, D)` the tokens `tfs_prune` was given (any float dtype).
      valid: `(T, H, W)` bool mask it was given, or None; non-finite tokens count as padding.
      config: dict of `TFSConfig` fields (missing ones take algorithm §10's defaults).
      out: the result's fields (`RESULT_FIELDS`) as arrays, e.g.
        `{f: np.asarray(getattr(result, f)) for f in RESULT_FIELDS}`, and for the
        "clusters" stage `kmeans_uniforms`, `(num_clusters, T, H, W)` the k-means++
        uniforms of the key the result was made with (docs/algorithm.md §6).
      stages: names from `STAGE_CHECKS` to run, in order.

    Returns:
      Failure messages, one per broken rule (empty when the result agrees): motion and
      has_candidate exact except near-ties; S_M, S_R, S_F to `SAL_ATOL`; segments exact up
      to near-tie starts; cluster labels exact outside segments whose k-means++ race or
      Lloyd assignment is a near-tie; the kept set one of the near-tie strata variants;
      the layout.
    """
    tokens = np.asarray(tokens)
    failures = []
    for name in stages:
        try:
            failures += STAGE_CHECKS[name](tokens, valid, config, out)
        except Exception as err:  # a result the reference cannot even read (labels out of range)
            failures.append(f"{name}: the reference refused the result: "
                            f"{type(err).__name__}: {err}")
    return failures
