"""Windowed box sums with valid counts, and the centre-surround contrast built on them
(algorithm §0 windows, algorithm §1-2 window means).

A window of radius `(rt, rh, rw)` around `(t, h, w)` covers every valid token with
`|t'-t| <= rt`, `|h'-h| <= rh`, `|w'-w| <= rw` inside the grid. Sums run separably, one
axis at a time, and never through one float32 3-D summed-area table (its rounding error
grows with the video).

Layout as in `motion_match.py`: the Pallas kernel (a sliding sum along one axis, applied
once per axis), its jitted wrapper, the public ops `box_sum` and `window_contrast`, their
XLA paths, and the plain references at the bottom.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jaxtyping import Array, Bool, Float, Int, Num

from tfs_jax.kernels.common import next_pow2
from tfs_jax.kernels.common import triton_params
from tfs_jax.kernels.common import variadic_sum
from tfs_jax.kernels.dispatch import pltriton
from tfs_jax.kernels.dispatch import resolve_impl
from tfs_jax.primitives import NORM_EPS
from tfs_jax.primitives import cosine_distance
from tfs_jax.tokens import load_f32

# Up to this many taps an axis is summed tap by tap (exact order, cheap); beyond it by a
# difference of cumulative sums (cost independent of the radius).
_MAX_SHIFTED_TAPS = 7


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile of one Pallas program: `block_h` rows (all `W` columns, padded to a power of
    two) and `block_c` channels (a power of two) of one frame."""

    block_h: int = 1
    block_c: int = 64
    num_warps: int = 4
    num_stages: int = 1


def _axis_sum_kernel(x_ref, out_ref, *, axis, radius, block_h, block_w, block_c):
    """`out[t, h, w, c] = sum_{|k| <= radius} x[(t, h, w) + k * e_axis, c]`, zero outside.
    Grid `(T, H / block_h, C / block_c)`."""
    t_count, h, w, c = x_ref.shape
    t = pl.program_id(0)
    rows = pl.program_id(1) * block_h + jnp.arange(block_h)
    cols = jnp.arange(block_w)
    chans = pl.program_id(2) * block_c + jnp.arange(block_c)
    inside = (rows[:, None, None] < h) & (cols[None, :, None] < w) & (chans[None, None, :] < c)
    chans_c = jnp.minimum(chans, c - 1)
    acc = jnp.zeros((block_h, block_w, block_c), jnp.float32)
    for k in range(-radius, radius + 1):
        tt = t + (k if axis == 0 else 0)
        r = rows + (k if axis == 1 else 0)
        q = cols + (k if axis == 2 else 0)
        ok = (
            inside
            & (tt >= 0) & (tt < t_count)
            & (r[:, None, None] >= 0) & (r[:, None, None] < h)
            & (q[None, :, None] >= 0) & (q[None, :, None] < w)
        )
        index = x_ref.at[
            jnp.clip(tt, 0, t_count - 1),
            jnp.clip(r, 0, h - 1)[:, None, None],
            jnp.clip(q, 0, w - 1)[None, :, None],
            chans_c[None, None, :],
        ]
        acc = acc + pltriton.load(index, mask=ok, other=0.0).astype(jnp.float32)
    out = out_ref.at[t, rows[:, None, None], cols[None, :, None], chans[None, None, :]]
    pltriton.store(out, acc, mask=inside)


@functools.partial(jax.jit, static_argnames=("axis", "radius", "block_sizes", "interpret"))
def axis_sum_pallas(
    x: Float[Array, "t h w c"],
    *,
    axis: int,
    radius: int,
    block_sizes: BlockSizes = BlockSizes(),
    interpret: bool = False,
) -> Float[Array, "t h w c"]:
    """Sliding sum of radius `radius` along `axis` (0, 1 or 2) by the Pallas kernel."""
    t, h, w, c = x.shape
    bs = block_sizes
    block_c = min(bs.block_c, next_pow2(c))
    kernel = functools.partial(
        _axis_sum_kernel, axis=axis, radius=radius, block_h=bs.block_h,
        block_w=next_pow2(w), block_c=block_c,
    )
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((t, h, w, c), jnp.float32),
        grid=(t, pl.cdiv(h, bs.block_h), pl.cdiv(c, block_c)),
        compiler_params=triton_params(bs.num_warps, bs.num_stages),
        interpret=interpret,
        name=f"tfs_box_sum_axis{axis}",
    )(x)


def box_sum(
    x: Num[Array, "t h w *channels"],
    valid: Bool[Array, "t h w"],
    radius: tuple[int, int, int],
    *,
    impl: str = "auto",
) -> tuple[Num[Array, "t h w *channels"], Num[Array, "t h w"]]:
    """Sum of `x` over the valid tokens of each token's window, and the window's valid count.

    Args:
      x: values per token, with any trailing channel axes; masked entries may hold anything.
      valid: which tokens take part.
      radius: `(rt, rh, rw)`.
      impl: see `tfs_jax.kernels`. Integer `x` (exact counts) always takes the XLA path.

    Returns:
      `(sums, counts)`: sums in `x`'s dtype (float32 for floats), counts int32.
    """
    kind = resolve_impl(impl)
    if kind == "xla" or not jnp.issubdtype(x.dtype, jnp.floating):
        return box_sum_xla(x, valid, radius)
    t, h, w = valid.shape
    channels = x.shape[3:]
    sums = jnp.where(
        valid.reshape(valid.shape + (1,) * len(channels)), x.astype(jnp.float32), 0.0
    ).reshape(t, h, w, -1)
    for axis, r in enumerate(radius):
        if r:
            sums = axis_sum_pallas(sums, axis=axis, radius=r, interpret=kind == "interpret")
    _, counts = box_sum_xla(jnp.zeros((t, h, w), jnp.int32), valid, radius)
    return sums.reshape((t, h, w) + channels), counts


def window_contrast(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    *,
    center_radius: tuple[int, int, int] = (1, 1, 1),
    surround_radius: tuple[int, int, int] = (1, 2, 2),
    impl: str = "auto",
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Raw regional saliency `1 - cos(mean_C v, mean_S v)` (Eq. 2) and the surround count.

    The centre `C` is the `center_radius` window, the surround `S` the `surround_radius`
    window minus the centre; raw is 0 where `S` is empty or the token is invalid.

    Args:
      v: tokens, any float dtype; whatever invalid tokens hold (NaN included) is ignored.
      valid: which tokens are real (and finite).
      center_radius, surround_radius: `(rt, rh, rw)` radii, centre within surround.
      impl: see `tfs_jax.kernels`.
      scale: power-of-two factor applied to every token first (`valid_and_scale`).

    Returns:
      `(raw, surround_count)`.
    """
    kind = resolve_impl(impl)
    if kind == "xla":
        return window_contrast_xla(
            v, valid, center_radius=center_radius, surround_radius=surround_radius, scale=scale
        )
    return _contrast_of_boxes(functools.partial(box_sum, impl=kind), v, valid, center_radius,
                              surround_radius, scale)


def _contrast_of_boxes(box, v, valid, center_radius, surround_radius, scale):
    """Raw S_R from a box-sum function `box(x, valid, radius) -> (sums, counts)`: the centre
    and surround means, then `1 - cos` of them (the Pallas op and the reference share it)."""
    x = jnp.where(valid[..., None], load_f32(v, scale), 0.0)
    sum_c, n_c = box(x, valid, center_radius)
    sum_b, n_b = box(x, valid, surround_radius)
    n_s = n_b - n_c
    mean_c = sum_c / jnp.maximum(n_c, 1)[..., None].astype(jnp.float32)
    mean_s = (sum_b - sum_c) / jnp.maximum(n_s, 1)[..., None].astype(jnp.float32)
    raw = jnp.where(valid & (n_s > 0), cosine_distance(mean_c, mean_s), 0.0)
    return raw, jnp.where(valid, n_s, 0)


# ----------------------------------------------------------------------------- XLA path


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


def box_sum_xla(
    x: Num[Array, "t h w *channels"], valid: Bool[Array, "t h w"], radius: tuple[int, int, int]
) -> tuple[Num[Array, "t h w *channels"], Num[Array, "t h w"]]:
    """Plain-`jnp` `box_sum`: shifted slices per axis (cumulative sums for wide windows)."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - 3))
    sums = jnp.where(mask, x, jnp.zeros((), x.dtype))
    counts = valid.astype(jnp.int32)
    for axis, r in enumerate(radius):
        sums = _sliding_sum(sums, axis, r)
        counts = _sliding_sum(counts, axis, r)
    return sums, counts


def window_contrast_xla(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    *,
    center_radius: tuple[int, int, int] = (1, 1, 1),
    surround_radius: tuple[int, int, int] = (1, 2, 2),
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Plain-`jnp` `window_contrast`, written for XLA:CPU.

    A loop over frames keeps each frame's window sums in cache instead of writing two
    `T*H*W*D` arrays: per frame, the masked frames of the temporal window are summed, then
    summed along H and W (`reduce_window`, one axis at a time), and one multi-output
    reduction over `D` keeps `C.S`, `|C|^2` and `|S|^2` of the centre sum `C` and surround
    sum `S`. The cosine of the means follows from those and the counts: `cos` is scale-free,
    and algorithm §0's `1e-6` floor on `|mean|` becomes a floor of `1e-6 * count` on `|sum|`.
    Tokens enter pre-multiplied by `2**-k`, `2**k` >= the surround's volume (exact), so that
    a window of near-limit tokens cannot overflow float32 in `|S|^2`.
    """
    t, h, w, _ = v.shape
    _, n_c = box_sum_xla(jnp.zeros((t, h, w), jnp.int32), valid, center_radius)
    _, n_b = box_sum_xla(jnp.zeros((t, h, w), jnp.int32), valid, surround_radius)
    n_s = n_b - n_c
    volume = math.prod(2 * r + 1 for r in surround_radius)
    shrink = 2.0 ** -math.ceil(math.log2(volume))
    cs, cc, ss = _contrast_stats(v, valid, center_radius, surround_radius, scale * shrink)
    floor_c = NORM_EPS * shrink * n_c.astype(jnp.float32)
    floor_s = NORM_EPS * shrink * n_s.astype(jnp.float32)
    cos = cs / (jnp.maximum(jnp.sqrt(cc), floor_c) * jnp.maximum(jnp.sqrt(ss), floor_s))
    raw = jnp.where(valid & (n_s > 0), jnp.clip(1.0 - cos, 0.0, 2.0), 0.0)
    return raw, jnp.where(valid, n_s, 0)


def _window_sum(x: Float[Array, "..."], axis: int, r: int) -> Float[Array, "..."]:
    """Sliding sum along `axis` by `reduce_window` (XLA:CPU's fastest form here); wide
    windows by cumulative sums, whose cost does not grow with the radius."""
    if r == 0:
        return x
    if 2 * r + 1 > _MAX_SHIFTED_TAPS:
        return _sliding_sum(x, axis, r)
    window = [1] * x.ndim
    window[axis] = 2 * r + 1
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    return lax.reduce_window(x, 0.0, lax.add, tuple(window), (1,) * x.ndim, pad)


def _contrast_stats(v, valid, center, surround, scale):
    """`(C.S, |C|^2, |S|^2)` per token, `(3, T, H, W)`, one frame per loop step (larger
    steps measured slower: the window sums fall out of L2)."""
    t, h, w, _ = v.shape

    def temporal_sum(i, radius):
        total = 0.0
        for k in range(-radius, radius + 1):
            frame = jnp.clip(i + k, 0, t - 1)
            ok = lax.dynamic_index_in_dim(valid, frame, keepdims=False) & (i + k >= 0) & (i + k < t)
            x = load_f32(lax.dynamic_index_in_dim(v, frame, keepdims=False), scale)
            total = total + jnp.where(ok[..., None], x, 0.0)
        return total

    def step(i, acc):
        u_c = temporal_sum(i, center[0])
        u_s = u_c if surround[0] == center[0] else temporal_sum(i, surround[0])
        c = _window_sum(_window_sum(u_c, 0, center[1]), 1, center[2])
        s = _window_sum(_window_sum(u_s, 0, surround[1]), 1, surround[2]) - c
        stats = variadic_sum([c * s, c * c, s * s], axis=2)
        return lax.dynamic_update_index_in_dim(acc, jnp.stack(stats), i, axis=1)

    return lax.fori_loop(0, t, step, jnp.zeros((3, t, h, w), jnp.float32))


# ----------------------------------------------------------------------------- reference


def box_sum_reference(x, valid, radius):
    """Algorithm §0's windows written plainly (as `box_sum_xla`): one shifted copy per window
    offset, summed."""
    rt, rh, rw = radius
    t, h, w = valid.shape
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - 3))
    x = jnp.where(mask, x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, 0)
    pad = ((rt, rt), (rh, rh), (rw, rw))
    xp = jnp.pad(x, pad + ((0, 0),) * (x.ndim - 3))
    vp = jnp.pad(valid.astype(jnp.int32), pad)
    sums, counts = jnp.zeros_like(x), jnp.zeros((t, h, w), jnp.int32)
    for a in range(2 * rt + 1):
        for b in range(2 * rh + 1):
            for c in range(2 * rw + 1):
                sums = sums + xp[a:a + t, b:b + h, c:c + w]
                counts = counts + vp[a:a + t, b:b + h, c:c + w]
    return sums, counts


def window_contrast_reference(v, valid, *, center_radius=(1, 1, 1), surround_radius=(1, 2, 2),
                              scale=1.0):
    """Algorithm §2's raw S_R written plainly (as `window_contrast_xla`): the centre and surround
    means from `box_sum_reference`, then `1 - cos` of them."""
    return _contrast_of_boxes(box_sum_reference, v, valid, center_radius, surround_radius,
                              scale)
