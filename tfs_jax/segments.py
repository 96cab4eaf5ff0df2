"""Pace signal and adaptive segmentation (algorithm §4, Eqs. 6-7)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.primitives import masked_quantile
from tfs_jax.checks import check_shape

PACE_QUANTILE = 0.95  # Eq. 6
Scalar = float | Float[Array, ""]  # a traced config field


def pace_signal(
    dynamic: Float[Array, "t h w"], valid: Bool[Array, "t h w"]
) -> tuple[Float[Array, "t"], Bool[Array, "t"]]:
    """`P(t)`: the 0.95 quantile of S_M over each frame's valid tokens (Eq. 6), and which
    frames hold a valid token at all (the pace is 0 on the others)."""
    t = dynamic.shape[0]
    frame_valid = jnp.any(valid.reshape(t, -1), axis=-1)
    pace = masked_quantile(dynamic.reshape(t, -1), valid.reshape(t, -1), PACE_QUANTILE)
    return jnp.where(frame_valid, pace, 0.0), frame_valid


def segment_starts(
    pace: Float[Array, "t"],
    frame_valid: Bool[Array, "t"],
    *,
    abs_threshold: Scalar = 0.6, rel_quantile: Scalar = 0.9,
) -> Bool[Array, "t"]:
    """Change-points of the pace over the valid frames `f_0 < ... < f_{n-1}` (Eq. 7).

    `dP[0] = 0`, `dP[k] = |P[k] - P[k-1]|` between consecutive valid frames,
    `T_rel = quantile(dP, rel_quantile)`; frame `f_k` starts a segment if `k == 0`,
    `P[k] > abs_threshold` or `dP[k] > T_rel`.
    """
    idx = jnp.arange(pace.shape[0])
    last_valid = lax.cummax(jnp.where(frame_valid, idx, -1), axis=0)
    prev = jnp.concatenate([jnp.full((1,), -1, last_valid.dtype), last_valid[:-1]])
    has_prev = prev >= 0
    d_pace = jnp.where(frame_valid & has_prev, jnp.abs(pace - pace[jnp.maximum(prev, 0)]), 0.0)
    t_rel = masked_quantile(d_pace, frame_valid, rel_quantile)
    return frame_valid & (~has_prev | (pace > abs_threshold) | (d_pace > t_rel))


def segment_frames(
    dynamic: Float[Array, "t h w"],
    valid: Bool[Array, "t h w"],
    *,
    abs_threshold: Scalar = 0.6,
    rel_quantile: Scalar = 0.9,
) -> Int[Array, "t"]:
    """Segment id of every frame, counting from 0 in time order; -1 for frames with no
    valid token. A segment runs from its start to the frame before the next start."""
    check_shape("dynamic", dynamic, valid.shape)
    pace, frame_valid = pace_signal(dynamic, valid)
    starts = segment_starts(
        pace, frame_valid, abs_threshold=abs_threshold, rel_quantile=rel_quantile
    )
    return jnp.where(frame_valid, jnp.cumsum(starts, dtype=jnp.int32) - 1, -1)
