"""Focal reconstruction: how badly a token's spatial neighbours predict it (SPEC 3, Eq. 5).

Neighbours `P(i)` are the valid tokens of the same frame at `|dh| <= 1, |dw| <= 1`, the
token itself excluded. Weights `w_j = softmax_j(cos(v_i, v_j) / temperature)`,
`v_hat = sum_j w_j v_j`, raw focal saliency `1 - cos(v_i, v_hat)` clamped to [0, 2], 0 where
`P(i)` is empty.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.kernels.dispatch import resolve_impl
from tfs_jax.primitives import cosine_from_dot
from tfs_jax.primitives import safe_norm

NEIGHBOUR_OFFSETS = tuple(
    (dh, dw) for dh in (-1, 0, 1) for dw in (-1, 0, 1) if (dh, dw) != (0, 0)
)


def focal_reconstruction(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    temperature: Float[Array, ""] | float,
    *,
    impl: str = "auto",
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Raw focal saliency and neighbour count `|P(i)|` of every token.

    Args:
      v: float32 tokens, anything finite where not valid.
      valid: which tokens are real.
      temperature: softmax temperature (>= 1e-6).
      impl: see `tfs_jax.kernels`.

    Returns:
      `(raw, count)`: raw is 0 where the token is invalid or has no neighbour.
    """
    resolve_impl(impl)
    return focal_reconstruction_reference(v, valid, temperature)


def focal_reconstruction_reference(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    temperature: Float[Array, ""] | float,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Plain-jnp reference of `focal_reconstruction`."""
    _, h, w, _ = v.shape
    v = jnp.where(valid[..., None], v.astype(jnp.float32), 0.0)
    norm = safe_norm(v)
    pad = ((0, 0), (1, 1), (1, 1))
    v_pad = jnp.pad(v, pad + ((0, 0),))
    norm_pad = jnp.pad(norm, pad, constant_values=1.0)
    valid_pad = jnp.pad(valid, pad)
    windows = [
        (slice(None), slice(1 + dh, 1 + dh + h), slice(1 + dw, 1 + dw + w))
        for dh, dw in NEIGHBOUR_OFFSETS
    ]
    nb_valid = jnp.stack([valid_pad[s] for s in windows], axis=-1)
    logits = jnp.stack(
        [cosine_from_dot(jnp.sum(v * v_pad[s], -1), norm, norm_pad[s]) for s in windows], axis=-1
    ) / temperature
    logits = jnp.where(nb_valid, logits, -jnp.inf)
    count = jnp.sum(nb_valid, axis=-1, dtype=jnp.int32)
    top = jnp.where(count > 0, jnp.max(logits, axis=-1), 0.0)
    e = jnp.where(nb_valid, jnp.exp(logits - top[..., None]), 0.0)
    weights = e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), 1e-30)
    v_hat = sum(weights[..., j, None] * v_pad[s] for j, s in enumerate(windows))
    raw = jnp.clip(1.0 - cosine_from_dot(jnp.sum(v * v_hat, -1), norm, safe_norm(v_hat)), 0.0, 2.0)
    return jnp.where(valid & (count > 0), raw, 0.0), jnp.where(valid, count, 0)
