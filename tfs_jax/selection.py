"""Quotas, stratified top-K within clusters, and temporal coalescing (algorithm §7-9)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.budget import video_budget
from tfs_jax.checks import check_shape
from tfs_jax.primitives import split_quota

NUM_STRATA = 3  # M, R, F


def token_strata(features: Float[Array, "t h w 6"]) -> Int[Array, "t h w"]:
    """Stratum of every token: argmax of the weighted normalised scores `(s_M, s_R, s_F)`,
    ties to the lower factor (algorithm §8)."""
    return jnp.argmax(features[..., :NUM_STRATA], axis=-1).astype(jnp.int32)


def _group_sizes(segment, cluster, stratum, eligible, *, num_clusters):
    """Group id `(segment * C + cluster) * 3 + stratum` of every eligible token `(T, H, W)`
    (the sentinel `S * C * 3` for the others) and the eligible tokens per group
    `(S, C, 3)`, with `S = T` segment slots and `C = num_clusters`."""
    s, c = segment.shape[0], num_clusters
    seg = jnp.broadcast_to(segment[:, None, None], cluster.shape)
    ok = eligible & (seg >= 0) & (cluster >= 0)
    group = jnp.where(ok, (seg * c + cluster) * NUM_STRATA + stratum, s * c * NUM_STRATA)
    sizes = jnp.bincount(group.reshape(-1), length=s * c * NUM_STRATA + 1)[:-1]
    return group, sizes.reshape(s, c, NUM_STRATA).astype(jnp.int32)


def stratum_quotas(video_quota: Int[Array, ""], sizes: Int[Array, "s c 3"]) -> Int[Array, "s c 3"]:
    """Split the video's quota top-down by cumulative rounding (algorithm §7): over segments in
    time order, over each segment's clusters in label order, over strata M, R, F."""
    seg_quota = split_quota(video_quota, jnp.sum(sizes, axis=(1, 2)))
    cluster_quota = split_quota(seg_quota, jnp.sum(sizes, axis=2))
    return split_quota(cluster_quota, sizes)


def rank_in_group(group: Int[Array, "n"], score: Float[Array, "n"]) -> Int[Array, "n"]:
    """Rank of every entry within its group by descending `score`, ties to the lower index."""
    n = group.shape[0]
    # -0.0 and +0.0 tie in IEEE but not in the sort's total order; canonicalise.
    neg = jnp.where(score == 0, 0.0, -score)
    idx = jnp.arange(n, dtype=jnp.int32)
    g_sorted, _, order = lax.sort((group, neg, idx), num_keys=3)
    first = jnp.concatenate([jnp.ones((1,), bool), g_sorted[1:] != g_sorted[:-1]])
    rank_sorted = idx - lax.cummax(jnp.where(first, idx, 0), axis=0)
    return jnp.zeros((n,), jnp.int32).at[order].set(rank_sorted)


def stratified_select(
    saliency: Float[Array, "t h w 3"],
    features: Float[Array, "t h w 6"],
    segment: Int[Array, "t"], cluster: Int[Array, "t h w"],  # the clustering (algorithm §4-6)
    eligible: Bool[Array, "t h w"],
    video_quota: Int[Array, ""],
    *,
    num_clusters: int,
) -> Bool[Array, "t h w"]:
    """Keep mask of the stratified top-K (algorithm §8).

    Within each (segment, cluster, stratum) group the `quota` tokens with the largest raw
    saliency of the stratum's factor are kept, ties to the lower flat index. Exactly
    `video_quota` tokens are kept when `video_quota <= eligible.sum()`.
    """
    stratum = token_strata(features)
    group, sizes = _group_sizes(segment, cluster, stratum, eligible, num_clusters=num_clusters)
    quotas = jnp.concatenate([stratum_quotas(video_quota, sizes).reshape(-1), jnp.zeros((1,), jnp.int32)])
    score = jnp.take_along_axis(saliency, stratum[..., None], axis=-1)[..., 0]
    rank = rank_in_group(group.reshape(-1), score.reshape(-1))
    return (rank < quotas[group.reshape(-1)]).reshape(eligible.shape)


def static_tokens(motion: Int[Array, "t h w 2"], has_candidate: Bool[Array, "t h w"]) -> Bool[Array, "t h w"]:
    """Tokens that matched their previous frame in place: a valid candidate and `mv = (0, 0)`
    (algorithm §9; a token with nothing to match is never static)."""
    return has_candidate & jnp.all(motion == 0, axis=-1)


def select_tokens(
    saliency: Float[Array, "t h w 3"],
    features: Float[Array, "t h w 6"],
    segment: Int[Array, "t"], cluster: Int[Array, "t h w"],  # the clustering (algorithm §4-6)
    valid: Bool[Array, "t h w"],
    motion: Int[Array, "t h w 2"], has_candidate: Bool[Array, "t h w"],  # algorithm §1
    *,
    retain_ratio: float,
    num_clusters: int,
    coalesce: bool = True,
    refill: bool = False,
) -> Bool[Array, "t h w"]:
    """Keep mask of algorithm §7-9: the video budget `K_v`, stratified top-K, coalescing.

    With `coalesce`, kept static tokens are dropped afterwards (at most `K_v` kept); with
    `refill`, they are removed before the budget instead, which then spends
    `min(K_v, remaining)` on the others.
    """
    check_shape("saliency", saliency, valid.shape + (3,))
    check_shape("motion", motion, valid.shape + (2,))
    k_v = video_budget(jnp.sum(valid, dtype=jnp.int32), retain_ratio)
    static = static_tokens(motion, has_candidate) if coalesce else jnp.zeros_like(valid)
    eligible = valid & ~static if refill else valid
    quota = jnp.minimum(k_v, jnp.sum(eligible, dtype=jnp.int32))
    keep = stratified_select(
        saliency, features, segment, cluster, eligible, quota, num_clusters=num_clusters
    )
    return keep & ~static
