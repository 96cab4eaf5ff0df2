"""Clustering features and location-aware k-means per segment (algorithm §5-6).

Every segment runs its own k-means with static shapes: a video of `T` frames has at most
`T` segments, so the centroids are a `(T, k, 6)` array and each token is only ever compared
with the `k` centroids of its own segment.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.primitives import masked_minmax
from tfs_jax.checks import check_shape

NUM_FEATURES = 6  # (s_M, s_R, s_F, t_n, h_n, w_n)
_EXHAUSTED = 1e6  # k-means++ score offset of tokens that coincide with a centroid


def clustering_features(
    saliency: Float[Array, "t h w 3"],
    segment: Int[Array, "t"],
    valid: Bool[Array, "t h w"],
    *,
    factor_weights: Float[Array, "3"] | tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Float[Array, "t h w 6"]:
    """The 6-D feature `(s_M, s_R, s_F, t_n, h_n, w_n)` of every token (algorithm §5).

    `s_f = weight_f * minmax(S_f)` over the whole video's valid tokens (0 if constant);
    `t_n = (t - t_start) / max(t_end - t_start, 1)` within the segment,
    `h_n = h / max(H - 1, 1)`, `w_n = w / max(W - 1, 1)`. Padding gets zeros.
    """
    t, h, w, _ = saliency.shape
    check_shape("saliency", saliency, valid.shape + (3,))
    check_shape("segment", segment, valid.shape[:1])
    weights = jnp.asarray(factor_weights, jnp.float32)
    scores = jnp.stack(
        [masked_minmax(saliency[..., f], valid, constant=0.0) for f in range(3)], axis=-1
    ) * weights
    frames = jnp.arange(t)
    seg = jnp.where(segment >= 0, segment, t)  # frames without a segment go to a spare slot
    t_start = jax.ops.segment_min(frames, seg, num_segments=t + 1)[seg]
    t_end = jax.ops.segment_max(frames, seg, num_segments=t + 1)[seg]
    t_n = (frames - t_start).astype(jnp.float32) / jnp.maximum(t_end - t_start, 1).astype(
        jnp.float32
    )
    h_n = jnp.arange(h, dtype=jnp.float32) / jnp.float32(max(h - 1, 1))
    w_n = jnp.arange(w, dtype=jnp.float32) / jnp.float32(max(w - 1, 1))
    coords = jnp.stack(
        jnp.broadcast_arrays(t_n[:, None, None], h_n[None, :, None], w_n[None, None, :]), axis=-1
    )
    features = jnp.concatenate([scores, coords], axis=-1)
    return jnp.where(valid[..., None], features, 0.0)


def _feature_major(features: Float[Array, "t h w 6"]) -> Float[Array, "6 t p"]:
    """Features as `(6, T, H*W)`: the k-means loops then run over long contiguous rows."""
    t = features.shape[0]
    return jnp.moveaxis(features.reshape(t, -1, NUM_FEATURES), -1, 0)


def _members(segment: Int[Array, "t"], valid: Bool[Array, "t h w"]) -> Bool[Array, "t p"]:
    """Tokens that take part in clustering: valid and in a segment."""
    return (valid & (segment[:, None, None] >= 0)).reshape(valid.shape[0], -1)


def _assign(x: Float[Array, "6 t p"], segment: Int[Array, "t"], centroids: Float[Array, "s c 6"]):
    k = centroids.shape[1]
    frame_centroids = centroids[jnp.clip(segment, 0, centroids.shape[0] - 1)]  # (t, k, 6)
    dist = sum(  # (t, k, p): one term per feature, summed in feature order
        (x[f][:, None, :] - frame_centroids[:, :, f, None]) ** 2 for f in range(NUM_FEATURES)
    )
    nearest = jnp.min(dist, axis=1, keepdims=True)
    # argmin as a plain min over indices: ties to the lower index, and much faster on
    # XLA:CPU than a variadic (value, index) reduction.
    return jnp.min(jnp.where(dist == nearest, jnp.arange(k)[:, None], k), axis=1).astype(jnp.int32)


def assign_clusters(
    features: Float[Array, "t h w 6"],
    segment: Int[Array, "t"],
    centroids: Float[Array, "s c 6"],
) -> Int[Array, "t h w"]:
    """Nearest of its own segment's centroids for every token: squared Euclidean distance,
    ties to the lower index."""
    return _assign(_feature_major(features), segment, centroids).reshape(features.shape[:3])


def _update(x, segment, member, labels, centroids):
    """`update_centroids` in the feature-major layout: `x` `(6, T, P)`, `member` and
    `labels` `(T, P)`, centroids `(S, C, 6)`."""
    s, k, _ = centroids.shape
    ids = jnp.where(member, jnp.clip(segment, 0, s - 1)[:, None] * k + labels, s * k).reshape(-1)
    flat = x.reshape(NUM_FEATURES, -1)
    sums = jnp.stack(
        [jax.ops.segment_sum(flat[f], ids, num_segments=s * k + 1)[:-1] for f in range(NUM_FEATURES)],
        axis=-1,
    )
    counts = jax.ops.segment_sum(jnp.ones_like(ids), ids, num_segments=s * k + 1)[:-1]
    means = sums / jnp.maximum(counts, 1)[:, None].astype(jnp.float32)
    return jnp.where(counts[:, None] > 0, means, centroids.reshape(s * k, -1)).reshape(s, k, -1)


def update_centroids(
    features: Float[Array, "t h w 6"],
    segment: Int[Array, "t"],
    valid: Bool[Array, "t h w"],
    labels: Int[Array, "t h w"],
    centroids: Float[Array, "s c 6"],
) -> Float[Array, "s c 6"]:
    """Lloyd's update: each centroid moves to the mean of its tokens; an empty cluster
    keeps its previous centroid."""
    t = features.shape[0]
    return _update(
        _feature_major(features), segment, _members(segment, valid), labels.reshape(t, -1), centroids
    )


def _segment_argmin(score: Float[Array, "n"], tok_seg: Int[Array, "n"], s: int) -> Int[Array, "s"]:
    """Per segment, the flat index of the smallest finite score, ties to the lower index
    (an index `>= n` if the segment has none)."""
    n = score.shape[0]
    best = jax.ops.segment_min(score, tok_seg, num_segments=s + 1)
    hit = jnp.isfinite(score) & (score == best[tok_seg])
    return jax.ops.segment_min(jnp.where(hit, jnp.arange(n), n), tok_seg, num_segments=s + 1)[:s]


def kmeans_plus_plus(
    features: Float[Array, "t h w 6"],
    segment: Int[Array, "t"],
    valid: Bool[Array, "t h w"],
    key: Array,
    *,
    num_clusters: int,
) -> Float[Array, "s c 6"]:
    """k-means++ seeding of every segment at once (algorithm §6).

    Draw `j` uses per-token uniforms `uniform(fold_in(key, j), (T, H, W))`, so frames of
    padding appended to the video leave the draws on its real frames unchanged. Each
    segment picks the token minimising `-log(u) / D^2` (an exponential race: token `i`
    wins with probability `D_i^2 / sum D^2`; the first draw has `D^2 = 1`). A segment whose
    every `D^2` is 0 repeats a centroid, taking the token with the smallest `-log(u)`.
    """
    t = features.shape[0]
    x = _feature_major(features).reshape(NUM_FEATURES, -1)  # (6, n)
    n = x.shape[1]
    member = _members(segment, valid).reshape(-1)
    tok_seg = jnp.where(member, jnp.repeat(jnp.clip(segment, 0, t - 1), n // t), t)
    # All draws' uniforms at once, outside the loop (one RNG call, the same values).
    uniforms = jax.vmap(
        lambda j: jax.random.uniform(jax.random.fold_in(key, j), valid.shape).reshape(-1)
    )(jnp.arange(num_clusters))
    log_races = jnp.log(-jnp.log(uniforms))  # logs of Exp(1) variables; +inf where u == 0

    def draw(j, carry):
        centroids, d2 = carry
        log_race = log_races[j]
        weight = jnp.where(j == 0, 1.0, d2)
        # Tokens at D^2 = 0 rank after every other (|log_race - log(weight)| < 200 for any
        # positive float32 weight), so they are only drawn when nothing else is left.
        score = jnp.where(weight > 0, log_race - jnp.log(weight), _EXHAUSTED + log_race)
        winner = _segment_argmin(jnp.where(member, score, jnp.inf), tok_seg, t)
        chosen = jnp.where((winner < n)[:, None], x[:, jnp.minimum(winner, n - 1)].T, 0.0)
        centroids = centroids.at[:, j].set(chosen)
        near = chosen[jnp.minimum(tok_seg, t - 1)]  # (n, 6)
        dist = sum((x[f] - near[:, f]) ** 2 for f in range(NUM_FEATURES))
        return centroids, jnp.minimum(d2, dist)

    init = (jnp.zeros((t, num_clusters, NUM_FEATURES), jnp.float32), jnp.full((n,), jnp.inf))
    centroids, _ = lax.fori_loop(0, num_clusters, draw, init)
    return centroids


def segmented_kmeans(
    features: Float[Array, "t h w 6"],
    segment: Int[Array, "t"],
    valid: Bool[Array, "t h w"],
    key: Array,
    *,
    num_clusters: int = 20,
    iters: int = 20,
) -> Int[Array, "t h w"]:
    """Cluster label of every token within its segment (algorithm §6); -1 for padding.

    k-means++ from `key`, then `iters` Lloyd iterations (assign, then update); the labels
    are the assignment to the final centroids.
    """
    check_shape("features", features, valid.shape + (NUM_FEATURES,))
    check_shape("segment", segment, valid.shape[:1])
    centroids = kmeans_plus_plus(features, segment, valid, key, num_clusters=num_clusters)
    x = _feature_major(features)
    member = _members(segment, valid)
    labels = _assign(x, segment, centroids)

    # Once an assignment repeats, every later update and assignment repeats it bit for bit,
    # so stopping there gives exactly the labels of all `iters` iterations.
    def unfinished(state):
        i, _, _, changed = state
        return (i < iters) & changed

    def lloyd(state):
        i, c, old, _ = state
        c = _update(x, segment, member, old, c)
        new = _assign(x, segment, c)
        return i + 1, c, new, jnp.any(new != old)

    _, _, labels, _ = lax.while_loop(unfinished, lloyd, (0, centroids, labels, jnp.bool_(True)))
    return jnp.where(member, labels, -1).reshape(valid.shape)
