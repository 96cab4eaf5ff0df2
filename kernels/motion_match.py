"""Motion matching: each token's best match in the previous frame (SPEC 1).

For a valid token at `(t, h, w)`, `t >= 1`, the candidates are the valid tokens of frame
`t-1` at `(h+dh, w+dw)`, `dh, dw` in `[-r, r]`. Each scores `cos(v, v_cand)`, the `(0, 0)`
candidate plus `stay_bias`; the best score wins, ties to the first candidate in row-major
order of `(dh, dw)`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.kernels.dispatch import resolve_impl
from tfs_jax.primitives import cosine_from_dot
from tfs_jax.primitives import safe_norm


def motion_match(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    stay_bias: Float[Array, ""] | float,
    *,
    radius: int = 1,
    impl: str = "auto",
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """Motion vector `(dh, dw)` of every token and whether it had a valid candidate.

    Args:
      v: float32 tokens, zero (or anything finite) where not valid.
      valid: which tokens are real.
      stay_bias: bonus of the zero-offset candidate.
      radius: search radius `r`.
      impl: see `tfs_jax.kernels`.

    Returns:
      `(motion, has_candidate)`: int32 `(dh, dw)`, `(0, 0)` where there was no candidate.
    """
    resolve_impl(impl)
    return motion_match_reference(v, valid, stay_bias, radius=radius)


def candidate_offsets(radius: int) -> list[tuple[int, int]]:
    """The `(dh, dw)` offsets in row-major order: the tie order of SPEC 1."""
    return [(dh, dw) for dh in range(-radius, radius + 1) for dw in range(-radius, radius + 1)]


def motion_match_reference(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    stay_bias: Float[Array, ""] | float,
    *,
    radius: int = 1,
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """Plain-jnp reference of `motion_match`: one shifted cosine per candidate offset."""
    _, h, w, _ = v.shape
    r = radius
    v = jnp.where(valid[..., None], v.astype(jnp.float32), 0.0)
    norm = safe_norm(v)
    # Frame t's candidates live in frame t-1; frame 0 sees an all-invalid "frame -1".
    pad = ((1, 0), (r, r), (r, r))
    prev_v = jnp.pad(v, pad + ((0, 0),))[:-1]
    prev_norm = jnp.pad(norm, pad, constant_values=1.0)[:-1]
    prev_valid = jnp.pad(valid, pad)[:-1]
    scores, any_candidate = [], jnp.zeros_like(valid)
    for dh, dw in candidate_offsets(r):
        window = (slice(None), slice(r + dh, r + dh + h), slice(r + dw, r + dw + w))
        dot = jnp.sum(v * prev_v[window], axis=-1)
        score = cosine_from_dot(dot, norm, prev_norm[window])
        if (dh, dw) == (0, 0):
            score = score + stay_bias
        scores.append(jnp.where(prev_valid[window], score, -jnp.inf))
        any_candidate = any_candidate | prev_valid[window]
    best = jnp.argmax(jnp.stack(scores, axis=-1), axis=-1)
    offsets = jnp.asarray(candidate_offsets(r), jnp.int32)
    has_candidate = valid & any_candidate
    motion = jnp.where(has_candidate[..., None], offsets[best], 0)
    return motion, has_candidate
