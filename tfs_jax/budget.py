"""Budgets: the static output size `K` and the video's own budget `K_v` (SPEC 7)."""

from __future__ import annotations

from fractions import Fraction

import jax.numpy as jnp
from jaxtyping import Array, Int


def retain_fraction(retain_ratio: float) -> Fraction:
    """`Fraction(retain_ratio).limit_denominator(10_000)` (SPEC 7): 0.35 -> 7/20."""
    return Fraction(float(retain_ratio)).limit_denominator(10_000)


def static_budget(n: int, retain_ratio: float) -> int:
    """`budget(n)` in Python: `n * p / q` rounded half up, at least 1 for `n >= 1`."""
    frac = retain_fraction(retain_ratio)
    p, q = frac.numerator, frac.denominator
    if n <= 0:
        return 0
    a, b = divmod(n, q)
    return max(1, p * a + (2 * p * b + q) // (2 * q))


def video_budget(n: Int[Array, ""], retain_ratio: float) -> Int[Array, ""]:
    """`budget(n)` on a traced count, in exact int32 arithmetic (SPEC 7).

    With `a, b = divmod(n, q)`, `share(p, n, q) = p * a + floor((2 * p * b + q) / (2 * q))`,
    and `2 * p * b < 2 * 10**8` cannot overflow.
    """
    frac = retain_fraction(retain_ratio)
    p, q = frac.numerator, frac.denominator
    n = jnp.asarray(n, jnp.int32)
    a = jnp.floor_divide(n, q)
    b = n - a * q
    shares = p * a + jnp.floor_divide(2 * p * b + q, 2 * q)
    return jnp.where(n >= 1, jnp.maximum(1, shares), 0).astype(jnp.int32)
