"""Budgets: the static output size `K` and the video's own budget `K_v` (algorithm §7)."""

from __future__ import annotations

from fractions import Fraction

import jax.numpy as jnp
from jaxtyping import Array, Int


def retain_fraction(retain_ratio: float) -> Fraction:
    """`Fraction(retain_ratio).limit_denominator(10_000)` (algorithm §7): 0.35 -> 7/20."""
    return Fraction(float(retain_ratio)).limit_denominator(10_000)


def half_up_share(p, n, q):
    """`n * p / q` rounded half up, exactly, on Python ints or int32 arrays alike: with
    `a, b = divmod(n, q)`, `p * a + floor((2 * p * b + q) / (2 * q))` (algorithm §7's rounding;
    `2 * p * b < 2 * 10**8` cannot overflow int32 for `q <= 10_000`)."""
    a, b = n // q, n % q
    return p * a + (2 * p * b + q) // (2 * q)


def static_budget(n: int, retain_ratio: float) -> int:
    """`budget(n)` in Python: `n * p / q` rounded half up, at least 1 for `n >= 1`."""
    frac = retain_fraction(retain_ratio)
    if n <= 0:
        return 0
    return max(1, half_up_share(frac.numerator, n, frac.denominator))


def video_budget(n: Int[Array, ""], retain_ratio: float) -> Int[Array, ""]:
    """`budget(n)` on a traced count, in exact int32 arithmetic (algorithm §7): `static_budget`'s
    rounding (`half_up_share`) on an array."""
    frac = retain_fraction(retain_ratio)
    n = jnp.asarray(n, jnp.int32)
    shares = half_up_share(frac.numerator, n, frac.denominator)
    return jnp.where(n >= 1, jnp.maximum(1, shares), 0).astype(jnp.int32)
