"""Primitives of algorithm §0: cosine, masked quantiles, min-max, exact integer shares.

Every reduction here takes a boolean `valid` mask and ignores what the masked entries hold
(NaN included): masking is done with `where`, never by multiplying by the mask.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

NORM_EPS = 1e-6  # algorithm §0: cos(a, b) = a.b / (max(|a|, eps) * max(|b|, eps)).
CONSTANT_RTOL = 1e-6  # algorithm §0: minmax is constant when max - min <= 1e-6 * max(1, |max|).


def floored_norm(sq: Float[Array, "..."]) -> Float[Array, "..."]:
    """`max(sqrt(sq), NORM_EPS)` of a squared norm `sq`: the cosine's denominator (algorithm §0).
    The one norm floor of the package (the kernels sum `sq` in their own tiles)."""
    return jnp.maximum(jnp.sqrt(sq), NORM_EPS)


def safe_norm(x: Float[Array, "... d"]) -> Float[Array, "..."]:
    """Euclidean norm over the last axis, floored at `NORM_EPS` (`floored_norm`)."""
    return floored_norm(jnp.sum(x * x, axis=-1))


def cosine_from_dot(
    dot: Float[Array, "..."], norm_a: Float[Array, "..."], norm_b: Float[Array, "..."]
) -> Float[Array, "..."]:
    """`dot / (norm_a * norm_b)` with norms already floored by `safe_norm` (algorithm §0)."""
    return dot / (norm_a * norm_b)


def cosine(a: Float[Array, "... d"], b: Float[Array, "... d"]) -> Float[Array, "..."]:
    """Cosine similarity over the last axis; a zero vector has cosine 0 with everything."""
    return cosine_from_dot(jnp.sum(a * b, axis=-1), safe_norm(a), safe_norm(b))


def cosine_distance(a: Float[Array, "... d"], b: Float[Array, "... d"]) -> Float[Array, "..."]:
    """`1 - cos(a, b)` clamped to [0, 2] (algorithm §0)."""
    return jnp.clip(1.0 - cosine(a, b), 0.0, 2.0)


def masked_quantile(
    x: Float[Array, "... n"], valid: Bool[Array, "... n"], q: Float[Array, ""] | float
) -> Float[Array, "..."]:
    """Quantile over the valid entries of the last axis, linear interpolation (algorithm §0).

    Sorted valid values `x_0 <= ... <= x_{n-1}`, `pos = q * (n - 1)` in float32,
    `i = floor(pos)`, `g = pos - i`: result `x_i + (x_{i+1} - x_i) * g` (`x_i` at the end).
    Rows with no valid entry give 0.

    >>> masked_quantile(jnp.array([3., 1., 2., 9.]), jnp.array([1, 1, 1, 0], bool), 0.5)
    Array(2., dtype=float32)
    """
    x = x.astype(jnp.float32)
    n = jnp.sum(valid, axis=-1)
    pos = jnp.asarray(q, jnp.float32) * (n - 1).astype(jnp.float32)
    i = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, jnp.maximum(n - 1, 0))
    g = pos - i.astype(jnp.float32)
    x_i, x_next = _order_statistic_and_next(x, valid, i)
    x_i = jnp.where(n > 0, x_i, 0.0)
    x_next = jnp.where(n > 0, x_next, 0.0)
    return jnp.where(i >= n - 1, x_i, x_i + (x_next - x_i) * g)


def _sortable_bits(x: Float[Array, "..."]) -> Array:
    """Map float32 to uint32 so that unsigned order is float order (-0.0 and 0.0 equal)."""
    bits = lax.bitcast_convert_type(jnp.where(x == 0, 0.0, x), jnp.uint32)
    return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(0x80000000))


def _from_sortable_bits(key: Array) -> Float[Array, "..."]:
    bits = jnp.where(key >> 31 == 1, key & jnp.uint32(0x7FFFFFFF), ~key)
    return lax.bitcast_convert_type(bits, jnp.float32)


def _order_statistic_and_next(
    x: Float[Array, "... n"], valid: Bool[Array, "... n"], i: Int[Array, "..."]
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """The `i`-th and `(i+1)`-th smallest valid entries of each row (0-based; the `i`-th
    again where there is no `(i+1)`-th), exactly, without sorting.

    A bisection over the 32 bits of an order-preserving integer key finds the smallest key
    with at least `i + 1` valid entries at or below it: 32 counting passes, far cheaper than
    a sort on XLA:CPU, and the same values a sort would give.
    """
    top = jnp.uint32(0xFFFFFFFF)
    keys = jnp.where(valid, _sortable_bits(x), top)
    need = (i + 1)[..., None]

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(keys <= mid[..., None], axis=-1, keepdims=True) >= need
        return jnp.where(enough[..., 0], lo, mid + 1), jnp.where(enough[..., 0], mid, hi)

    start = (jnp.zeros(i.shape, jnp.uint32), jnp.full(i.shape, top, jnp.uint32))
    key_i, _ = lax.fori_loop(0, 32, halve, start)
    at_or_below = jnp.sum(keys <= key_i[..., None], axis=-1)
    above = jnp.min(jnp.where(keys > key_i[..., None], keys, top), axis=-1)
    key_next = jnp.where((at_or_below >= i + 2) | (above == top), key_i, above)
    return _from_sortable_bits(key_i), _from_sortable_bits(key_next)


def masked_median(x: Float[Array, "..."], valid: Bool[Array, "..."]) -> Float[Array, ""]:
    """Median over every valid entry of `x` (all axes): `quantile(x, 0.5)` (algorithm §0)."""
    return masked_quantile(x.reshape(-1), valid.reshape(-1), 0.5)


def masked_minmax(
    x: Float[Array, "..."], valid: Bool[Array, "..."], *, constant: float
) -> Float[Array, "..."]:
    """Min-max normalisation over the valid entries: `(x - min) / (max - min)` (algorithm §0).

    Where the valid values are constant (`max - min <= 1e-6 * max(1, |max|)`) every valid
    entry gets `constant` (1 for confidence maps, 0 for score normalisation). Invalid
    entries get 0.
    """
    x = x.astype(jnp.float32)
    any_valid = jnp.any(valid)
    lo = jnp.where(any_valid, jnp.min(jnp.where(valid, x, jnp.inf)), 0.0)
    hi = jnp.where(any_valid, jnp.max(jnp.where(valid, x, -jnp.inf)), 0.0)
    spread = hi - lo
    is_constant = spread <= CONSTANT_RTOL * jnp.maximum(1.0, jnp.abs(hi))
    scaled = (x - lo) / jnp.where(is_constant, 1.0, spread)
    out = jnp.where(is_constant, jnp.float32(constant), scaled)
    return jnp.where(valid, out, 0.0)


def round_half_up(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """`floor(x + 0.5)` (algorithm §0)."""
    return jnp.floor(x + 0.5)


def share(quota: Int[Array, "..."], cum: Int[Array, "..."], n: Int[Array, "..."]) -> Int[Array, "..."]:
    """`floor((2 * quota * cum + n) / (2 * n))` exactly, in int32 (algorithm §0); 0 where `n == 0`.

    `quota * cum / n` rounded half up with no float step in the result: a float32 estimate
    `e` is corrected by `floor((2*quota*cum + n - 2*n*e) / (2*n))`. The products wrap in
    int32, but their difference is small, so it is exact while `n < 2**26`.
    """
    quota, cum, n = (jnp.asarray(a, jnp.int32) for a in (quota, cum, n))
    n_safe = jnp.maximum(n, 1)
    est = jnp.floor(
        quota.astype(jnp.float32) * cum.astype(jnp.float32) / n_safe.astype(jnp.float32)
    ).astype(jnp.int32)
    rem = 2 * quota * cum + n_safe - 2 * n_safe * est
    return jnp.where(n > 0, est + jnp.floor_divide(rem, 2 * n_safe), 0)


def split_quota(quota: Int[Array, "..."], sizes: Int[Array, "... children"]) -> Int[Array, "... children"]:
    """Split each parent's `quota` over its children by cumulative rounding (algorithm §7).

    Child `c` gets `share(Q, C_c, n) - share(Q, C_{c-1}, n)` with `C_c` the cumulative size:
    the quotas telescope to exactly `Q`, each is within one of `Q * n_c / n`, and none
    exceeds its child's size while `Q <= n`.

    >>> split_quota(jnp.int32(3), jnp.array([1, 1, 1, 1]))
    Array([1, 1, 0, 1], dtype=int32)
    """
    sizes = jnp.asarray(sizes, jnp.int32)
    quota = jnp.asarray(quota, jnp.int32)[..., None]
    cum = jnp.cumsum(sizes, axis=-1)
    total = cum[..., -1:]
    shares = share(quota, cum, total)
    return jnp.diff(shares, axis=-1, prepend=jnp.zeros_like(shares[..., :1]))
