"""The boundary: checking token arrays and masks, and preparing them for float32 math.

Checks run on shapes and dtypes only, so they work on tracers too and raise before anything
is traced. `prepare_tokens` writes the prepared video: upcast to float32, non-finite valid
tokens treated as padding, padding zeroed, and huge videos scaled by a power of two so that
no squared norm can overflow (SPEC 10: no NaN for any finite input). The pipeline's
neighbourhood ops apply the same decisions on the fly (`tfs_jax.kernels.valid_and_scale`)
instead of writing that copy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Shaped

FLOAT_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


def check_tokens(tokens, valid=None) -> None:
    """Raise `ValueError` unless `tokens` is `(T, H, W, D)` float with no empty axis and
    `valid` (if given) is a boolean or integer `(T, H, W)` mask."""
    shape, dtype = getattr(tokens, "shape", None), getattr(tokens, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"tokens must be an array, got {type(tokens).__name__}")
    if len(shape) != 4:
        raise ValueError(f"tokens must have shape (T, H, W, D), got rank {len(shape)}: {shape}")
    if 0 in shape:
        raise ValueError(f"tokens must not have an empty axis, got shape {shape}")
    if not any(np.dtype(dtype) == np.dtype(d) for d in FLOAT_DTYPES):
        raise ValueError(
            f"tokens must be float16, bfloat16, float32 or float64, got {np.dtype(dtype)}"
        )
    if valid is not None:
        check_valid(valid, shape[:3])


def check_valid(valid, grid: tuple[int, int, int]) -> None:
    """Raise `ValueError` unless `valid` is a boolean or integer mask of shape `grid`."""
    shape, dtype = getattr(valid, "shape", None), getattr(valid, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"valid must be an array, got {type(valid).__name__}")
    if tuple(shape) != tuple(grid):
        raise ValueError(f"valid must have shape {tuple(grid)} (tokens' T, H, W), got {tuple(shape)}")
    if not (np.dtype(dtype) == np.bool_ or np.issubdtype(np.dtype(dtype), np.integer)):
        raise ValueError(f"valid must be a boolean mask, got dtype {np.dtype(dtype)}")


def check_shape(name: str, array, shape: tuple[int, ...]) -> None:
    """Raise `ValueError` unless `array` has exactly `shape` (a stage's input contract)."""
    got = getattr(array, "shape", None)
    if got is None or tuple(got) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {None if got is None else tuple(got)}")


def check_finite(tokens, valid=None) -> None:
    """Eager check for loaders and the command line: refuse valid tokens that are NaN or
    infinite, saying how many and where (SPEC: the pure function treats them as padding)."""
    check_tokens(tokens, valid)
    bad = ~np.all(np.isfinite(np.asarray(tokens, np.float32)), axis=-1)
    if valid is not None:
        bad &= np.asarray(valid).astype(bool)
    count = int(bad.sum())
    if count:
        where = [tuple(int(i) for i in idx) for idx in np.argwhere(bad)[:5]]
        more = ", ..." if count > 5 else ""
        raise ValueError(
            f"{count} valid token(s) hold NaN or inf, at (t, h, w) {str(where)[1:-1]}{more}"
        )


def prepare_tokens(
    tokens: Shaped[Array, "t h w d"], valid: Bool[Array, "t h w"] | None = None
) -> tuple[Float[Array, "t h w d"], Bool[Array, "t h w"]]:
    """Float32 tokens with padding zeroed, and the mask of tokens that take part.

    A valid token that is not finite becomes padding. If the largest magnitude is so big
    that a squared norm could overflow float32, the whole video is scaled by a power of two
    (exact, and cosines are scale-free); otherwise it is untouched bit for bit.
    """
    t, h, w, d = tokens.shape
    valid = jnp.ones((t, h, w), bool) if valid is None else jnp.asarray(valid).astype(bool)
    tokens = jnp.asarray(tokens)
    valid = valid & jnp.all(jnp.isfinite(tokens), axis=-1)
    v = tokens.astype(jnp.float32) if tokens.dtype != jnp.float64 else tokens
    v = jnp.where(valid[..., None], v, jnp.zeros((), v.dtype))
    # Largest safe exponent e with d * (2**e)**2 * 16 <= float32 max (2**128).
    safe_exp = int((124 - math.log2(d)) // 2)
    biggest = jnp.max(jnp.abs(v))
    _, exponent = jnp.frexp(biggest)  # biggest < 2**exponent
    shift = jnp.where(biggest > 2.0**safe_exp, safe_exp - exponent, 0).astype(jnp.int32)
    v = v * jnp.ldexp(jnp.ones((), v.dtype), shift)  # times 1 (bit-exact) in the usual case
    return v.astype(jnp.float32), valid


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
