"""The three saliency factors: dynamic S_M, regional S_R and focal S_F (algorithm §1-3).

The stages that read tokens come in two layers. The public function (`motion_vectors`,
`regional_saliency`, `focal_saliency`) checks its input, then decides which tokens take
part and the overflow scale (`tfs_jax.tokens.valid_and_scale`); its private traced core
(`_*_core`) takes that decision as given, so `tfs_prune` makes it once for all three (the
result is the public function's, bit for bit: tests/test_pipeline.py). Maps are float32
and 0 at padding. The old public names `*_core` still work, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.checks import check_impl
from tfs_jax.checks import check_shape
from tfs_jax.checks import check_tokens
from tfs_jax.config import Radius3
from tfs_jax.kernels import box_sum
from tfs_jax.kernels import focal_reconstruction
from tfs_jax.kernels import motion_match
from tfs_jax.kernels import window_contrast
from tfs_jax.primitives import masked_median
from tfs_jax.primitives import masked_minmax
from tfs_jax.tokens import valid_and_scale


def _boundary(tokens, valid, impl: str):
    """Check a public stage's input (ValueError before tracing); then which tokens take
    part and the overflow scale, as `tfs_prune` decides them."""
    check_tokens(tokens, valid)
    check_impl(impl)
    return valid_and_scale(tokens, valid)


def motion_vectors(
    tokens: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"] | None = None,
    *,
    radius: int = 1,
    stay_bias: float | Float[Array, ""] = 1e-4,
    impl: str = "auto",
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """Motion vector `(dh, dw)` of every token and whether it had a candidate (algorithm §1)."""
    valid, scale = _boundary(tokens, valid, impl)
    return _motion_vectors_core(tokens, valid, scale, radius=radius, stay_bias=stay_bias,
                                impl=impl)


def _motion_vectors_core(
    tokens: Float[Array, "t h w d"], valid: Bool[Array, "t h w"], scale: Float[Array, ""], *,
    radius: int, stay_bias: float | Float[Array, ""], impl: str,
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """`motion_vectors` on a mask that already excludes non-finite tokens (`valid` of
    `valid_and_scale`) and its overflow `scale`: no checks, for `tfs_prune`."""
    return motion_match(tokens, valid, stay_bias, radius=radius, impl=impl, scale=scale)


def squared_magnitudes(radius: int) -> list[int]:
    """Every non-zero `dh**2 + dw**2` with `|dh|, |dw| <= radius`, ascending."""
    return sorted({a * a + b * b for a in range(radius + 1) for b in range(radius + 1)} - {0})


def dynamic_saliency(
    motion: Int[Array, "t h w 2"],
    valid: Bool[Array, "t h w"],
    *,
    window: Radius3 = (1, 1, 1),
    radius: int = 1,
) -> Float[Array, "t h w"]:
    """S_M: mean motion magnitude over the window (Eq. 1), exactly.

    `|mv|` takes the values `sqrt(d)`, so the mean is `sum_d count_d * sqrt(d) / count`
    with integer box counts per `d` (ascending): no float error accumulates in the window.
    `radius` is the motion search radius, which bounds the values of `d`.
    """
    check_shape("motion", motion, valid.shape + (2,))
    d = motion[..., 0] * motion[..., 0] + motion[..., 1] * motion[..., 1]
    magnitudes = squared_magnitudes(radius)
    indicators = jnp.stack([d == m for m in magnitudes], axis=-1).astype(jnp.int32)
    counts, total = box_sum(indicators, valid, window)
    acc = jnp.zeros(valid.shape, jnp.float32)
    for j, m in enumerate(magnitudes):
        acc = acc + counts[..., j].astype(jnp.float32) * jnp.sqrt(jnp.float32(m))
    return jnp.where(valid, acc / jnp.maximum(total, 1).astype(jnp.float32), 0.0)


def confidence_blend(
    raw: Float[Array, "t h w"], count: Int[Array, "t h w"], valid: Bool[Array, "t h w"]
) -> Float[Array, "t h w"]:
    """Credibility blending (Eqs. 3-4): `c * raw + (1 - c) * median(raw)` with
    `c = minmax(log(1 + count))` over the valid tokens (1 where the count is constant)."""
    conf = masked_minmax(jnp.log(1.0 + count.astype(jnp.float32)), valid, constant=1.0)
    median = masked_median(raw, valid)
    return jnp.where(valid, conf * raw + (1.0 - conf) * median, 0.0)


def regional_saliency(
    tokens: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"] | None = None,
    *,
    center_radius: Radius3 = (1, 1, 1),
    surround_radius: Radius3 = (1, 2, 2),
    impl: str = "auto",
) -> Float[Array, "t h w"]:
    """S_R: centre-surround contrast, blended by surround confidence (algorithm §2, Eqs. 2-4).

    The surround is the `surround_radius` window minus the `center_radius` window, so its
    sum and count are differences of two box sums (`tfs_jax.kernels.window_contrast`).
    """
    valid, scale = _boundary(tokens, valid, impl)
    return _regional_saliency_core(
        tokens, valid, scale, center_radius=center_radius, surround_radius=surround_radius,
        impl=impl,
    )


def _regional_saliency_core(
    tokens: Float[Array, "t h w d"], valid: Bool[Array, "t h w"], scale: Float[Array, ""], *,
    center_radius: Radius3, surround_radius: Radius3, impl: str,
) -> Float[Array, "t h w"]:
    """`regional_saliency` on a mask that already excludes non-finite tokens (`valid` of
    `valid_and_scale`) and its overflow `scale`: no checks, for `tfs_prune`."""
    raw, count = window_contrast(
        tokens, valid, center_radius=center_radius, surround_radius=surround_radius,
        impl=impl, scale=scale,
    )
    return confidence_blend(raw, count, valid)


def focal_saliency(
    tokens: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"] | None = None,
    *,
    temperature: float | Float[Array, ""] = 1.0,
    impl: str = "auto",
) -> Float[Array, "t h w"]:
    """S_F: reconstruction error from the 8 spatial neighbours, blended (algorithm §3, Eq. 5)."""
    valid, scale = _boundary(tokens, valid, impl)
    return _focal_saliency_core(tokens, valid, scale, temperature=temperature, impl=impl)


def _focal_saliency_core(
    tokens: Float[Array, "t h w d"], valid: Bool[Array, "t h w"], scale: Float[Array, ""], *,
    temperature: float | Float[Array, ""], impl: str,
) -> Float[Array, "t h w"]:
    """`focal_saliency` on a mask that already excludes non-finite tokens (`valid` of
    `valid_and_scale`) and its overflow `scale`: no checks, for `tfs_prune`."""
    raw, count = focal_reconstruction(tokens, valid, temperature, impl=impl, scale=scale)
    return confidence_blend(raw, count, valid)


_DEPRECATED = {"motion_vectors_core": "_motion_vectors_core",
               "regional_saliency_core": "_regional_saliency_core",
               "focal_saliency_core": "_focal_saliency_core"}


def __getattr__(name: str):
    """The old public names of the cores, with a DeprecationWarning."""
    if name in _DEPRECATED:
        public = name.removesuffix("_core")
        warnings.warn(f"tfs_jax.saliency.{name} is deprecated and private now: call "
                      f"tfs_jax.{public} (it checks its input), or compose "
                      "tfs_jax.valid_and_scale with it as tfs_prune does",
                      DeprecationWarning, stacklevel=2)
        return globals()[_DEPRECATED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
