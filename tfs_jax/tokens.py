"""The token boundary: which tokens take part, and how they enter float32 math.

A token takes part when its mask says so and every element is finite (algorithm §Notation: a
valid token that is not finite is padding for the pure function). If the largest magnitude
could overflow a float32 squared norm, the whole video is multiplied by a power of two
(exact, and cosines are scale-free; algorithm §10: no NaN for any finite input); otherwise it is
untouched bit for bit.

`valid_and_scale` decides both in one read of the video; the neighbourhood ops then read
the raw tokens through `load_f32`, never a prepared copy (writing one costs more than the
ops). `prepare_tokens` writes the prepared copy for code that wants plain arrays (the
baselines).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Shaped


def valid_and_scale(
    tokens: Float[Array, "t h w d"], valid: Bool[Array, "t h w"] | None = None
) -> tuple[Bool[Array, "t h w"], Float[Array, ""]]:
    """Which tokens take part, and the power-of-two overflow scale, in one read.

    Returns the mask of tokens that take part (`valid` and finite) and the `scale` by which
    every token is multiplied (1 unless a squared norm could overflow), in float64 for
    float64 tokens and float32 otherwise.
    """
    t, h, w, d = tokens.shape
    valid = jnp.ones((t, h, w), bool) if valid is None else jnp.asarray(valid).astype(bool)
    x = tokens if tokens.dtype == jnp.float64 else tokens.astype(jnp.float32)
    # One read: each element enters the max as |x| if finite and +inf if not, so a token's
    # peak is finite exactly when every element is. (A plain max of |x| is not enough:
    # XLA:CPU's vectorised max may drop a NaN.)
    peak = jnp.max(jnp.where(jnp.isfinite(x), jnp.abs(x), jnp.inf), axis=-1)
    valid = valid & jnp.isfinite(peak)
    biggest = jnp.max(jnp.where(valid, peak, jnp.zeros((), x.dtype)))
    # The largest e with d * (2**e)**2 * 16 <= 2**128: no sum of squares can overflow.
    safe_exp = int((124 - math.log2(d)) // 2)
    _, exponent = jnp.frexp(biggest)
    shift = jnp.where(biggest > 2.0**safe_exp, safe_exp - exponent, 0).astype(jnp.int32)
    return valid, jnp.ldexp(jnp.ones((), x.dtype), shift)


def load_f32(x: Array, scale: Float[Array, ""] | float = 1.0) -> Float[Array, "..."]:
    """Raw tokens as float32 times the power-of-two `scale`, as `prepare_tokens` computes
    them (float64 is scaled before the cast, everything else after)."""
    if x.dtype == jnp.float64:
        return (x * jnp.asarray(scale, jnp.float64)).astype(jnp.float32)
    return x.astype(jnp.float32) * jnp.asarray(scale, jnp.float32)


def prepare_tokens(
    tokens: Shaped[Array, "t h w d"], valid: Bool[Array, "t h w"] | None = None
) -> tuple[Float[Array, "t h w d"], Bool[Array, "t h w"]]:
    """Float32 tokens scaled as `valid_and_scale` says, padding zeroed, and the mask of
    tokens that take part."""
    valid, scale = valid_and_scale(tokens, valid)
    return jnp.where(valid[..., None], load_f32(jnp.asarray(tokens), scale), 0.0), valid


def prepare_numpy_float64(tokens: np.ndarray, valid) -> tuple[np.ndarray, np.ndarray | None]:
    """Float64 numpy tokens outside float32's range, made safe before JAX sees them.

    With x64 off, JAX would cast values above 3.4e38 to inf (and so to padding). Scaling by
    a power of two in float64 first keeps them valid and finite.
    """
    if jax.config.jax_enable_x64 or tokens.dtype != np.float64:
        return tokens, valid
    finite = np.all(np.isfinite(tokens), axis=-1)
    biggest = np.max(np.abs(np.where(finite[..., None], tokens, 0.0)), initial=0.0)
    if biggest > 2.0**100:
        tokens = np.ldexp(tokens, 100 - int(np.frexp(biggest)[1]))
    if not finite.all():
        valid = finite if valid is None else np.asarray(valid).astype(bool) & finite
    return tokens, valid


def as_typed_key(key: Array | None) -> Array:
    """A typed PRNG key: `jax.random.key(0)` for None, legacy `uint32[2]` keys wrapped."""
    if key is None:
        return jax.random.key(0)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
