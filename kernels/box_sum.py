"""Windowed box sums with valid counts (SPEC 0 windows, SPEC 1-2 window means).

A window of radius `(rt, rh, rw)` around `(t, h, w)` covers every valid token with
`|t'-t| <= rt`, `|h'-h| <= rh`, `|w'-w| <= rw` inside the grid. Sums run separably, one
axis at a time, so the cost does not grow with the volume of the window, and never through
one float32 3-D summed-area table (its rounding error grows with the video).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Num

from tfs_jax.kernels.dispatch import resolve_impl

# Up to this many taps an axis is summed as shifted slices (exact order, cheap); beyond it
# by a difference of cumulative sums (cost independent of the radius).
_MAX_SHIFTED_TAPS = 7


def box_sum(
    x: Num[Array, "t h w *c"],
    valid: Bool[Array, "t h w"],
    radius: tuple[int, int, int],
    *,
    impl: str = "auto",
) -> tuple[Num[Array, "t h w *c"], Num[Array, "t h w"]]:
    """Sum of `x` over the valid tokens of each token's window, and the window's valid count.

    Args:
      x: values per token, with any trailing channel axes; masked entries may hold anything.
      valid: which tokens take part.
      radius: `(rt, rh, rw)`.
      impl: see `tfs_jax.kernels`.

    Returns:
      `(sums, counts)`: sums in `x`'s dtype (float32 for floats), counts int32.
    """
    resolve_impl(impl)
    return box_sum_reference(x, valid, radius)


def _sliding_sum(x: Num[Array, "..."], axis: int, r: int) -> Num[Array, "..."]:
    """Sum of `x` over `[i - r, i + r]` along `axis`, zero outside the array."""
    if r == 0:
        return x
    n, taps = x.shape[axis], 2 * r + 1
    pad = [(0, 0)] * x.ndim
    if taps <= _MAX_SHIFTED_TAPS:
        pad[axis] = (r, r)
        xp = jnp.pad(x, pad)
        out = lax.slice_in_dim(xp, 0, n, axis=axis)
        for k in range(1, taps):
            out = out + lax.slice_in_dim(xp, k, k + n, axis=axis)
        return out
    pad[axis] = (r + 1, r)
    cs = jnp.cumsum(jnp.pad(x, pad), axis=axis)
    return lax.slice_in_dim(cs, taps, taps + n, axis=axis) - lax.slice_in_dim(cs, 0, n, axis=axis)


def box_sum_reference(
    x: Num[Array, "t h w *c"], valid: Bool[Array, "t h w"], radius: tuple[int, int, int]
) -> tuple[Num[Array, "t h w *c"], Num[Array, "t h w"]]:
    """Plain-jnp reference of `box_sum`."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - 3))
    sums = jnp.where(mask, x, jnp.zeros((), x.dtype))
    counts = valid.astype(jnp.int32)
    for axis, r in enumerate(radius):
        sums = _sliding_sum(sums, axis, r)
        counts = _sliding_sum(counts, axis, r)
    return sums, counts
