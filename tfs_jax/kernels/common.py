"""Shared pieces of the neighbourhood ops: loading raw tokens, flat-offset dot products.

The CPU paths read the caller's raw token array directly instead of a prepared copy: writing
a masked, scaled float32 copy of a video costs more than every op together (a fresh
`T*H*W*D` buffer is page-faulted in on every call). Each load is upcast and scaled on the
fly (`tfs_jax.tokens.load_f32`), and padding is masked with `where` wherever its values
could reach an output (algorithm §Notation: never multiply by the mask).

XLA:CPU runs a reduction with several outputs (`variadic_sum`) as one native loop that reads
its shifted operands in place; a single-output sum is handed to a library kernel that first
copies every sliced operand. So the dot products of all of a token's neighbours are one
variadic reduction over `D` of slices of the flattened video (`offset_dots`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jaxtyping import Array, Bool, Float

from tfs_jax.kernels.dispatch import pltriton
from tfs_jax.kernels.dispatch import require_pallas
from tfs_jax.tokens import load_f32


def variadic_sum(terms: list[Array], axis: int) -> list[Array]:
    """Sums of several same-shape arrays over `axis`, as one multi-output reduction.

    XLA:CPU runs it as a native loop that adds the elements in index order, one output
    after another, so equal inputs give equal sums in every such reduction of the video
    (the motion tie rule relies on it). A lone term gets a companion (`term * 0`, which XLA
    does not fold for floats): a single-output sum would go to a library kernel that copies
    its operands and adds in another order.
    """
    if len(terms) == 1:
        return _reduce([terms[0], terms[0] * 0], axis)[:1]
    return _reduce(terms, axis)


def _reduce(terms, axis):
    zeros = tuple(jnp.zeros((), t.dtype) for t in terms)
    return list(
        lax.reduce(tuple(terms), zeros, lambda a, b: tuple(x + y for x, y in zip(a, b)), (axis,))
    )


def offset_dots(
    xf: Float[Array, "n d"],
    scale: Float[Array, ""] | float,
    start: int,
    stop: int,
    offsets: list[int],
) -> tuple[Float[Array, "offsets queries"], Float[Array, "queries"]]:
    """`x_q . x_{q+o}` for every query `q` in `[start, stop)` and flat offset `o`, and `|x_q|^2`.

    Every partner `q + o` must lie in `[0, n)`. One pass over the queries: each partner is a
    shifted slice of `xf`, read in place.
    """
    m = stop - start
    cur, load = scaled_loads(lax.slice_in_dim(xf, start, stop), scale)
    terms = [cur * load(lax.slice_in_dim(xf, start + o, start + o + m)) for o in offsets]
    cur_raw = load(lax.slice_in_dim(xf, start, stop))
    sums = variadic_sum(terms + [cur * cur_raw], axis=1)
    return jnp.stack(sums[:-1]), sums[-1]


def scaled_loads(query: Array, scale) -> tuple[Float[Array, "..."], callable]:
    """Scaled query values and a loader for partners such that `query * load(partner)`
    is exactly `(s * query) * (s * partner)`.

    For float32 and narrower tokens the whole `s**2` goes on the query side, so the
    partners, read once per offset, are only upcast. `s**2` stays a normal number for every
    video inside the algorithm's contract (`|v| < 1e19`); beyond it the result is still finite.
    """
    if query.dtype == jnp.float64:
        return load_f32(query, scale), lambda a: load_f32(a, scale)
    s = jnp.asarray(scale, jnp.float32)
    return query.astype(jnp.float32) * (s * s), lambda a: a.astype(jnp.float32)


def gathered_offset_dots(
    xf: Float[Array, "n d"],
    scale: Float[Array, ""] | float,
    queries: np.ndarray,
    offsets: list[int],
) -> tuple[Float[Array, "offsets queries"], Float[Array, "queries"]]:
    """`offset_dots` for a few queries whose partners may fall outside `[0, n)` (their
    dots are then meaningless and must be masked by the caller)."""
    n = xf.shape[0]
    partners = np.clip(queries[None, :] + np.asarray(offsets)[:, None], 0, n - 1)
    cur, load = scaled_loads(xf[queries], scale)
    cand = load(xf[partners.reshape(-1)]).reshape(partners.shape + (xf.shape[1],))
    # The same per-element products and order of addition as offset_dots.
    terms = [cur * cand[k] for k in range(len(offsets))] + [cur * load(xf[queries])]
    sums = variadic_sum(terms, axis=1)
    return jnp.stack(sums[:-1]), sums[-1]


def grid_offsets(radius_h: int, radius_w: int) -> list[tuple[int, int]]:
    """`(dh, dw)` with `|dh| <= radius_h`, `|dw| <= radius_w`, in row-major order."""
    return [
        (dh, dw)
        for dh in range(-radius_h, radius_h + 1)
        for dw in range(-radius_w, radius_w + 1)
    ]


def in_grid(h: int, w: int, offsets: list[tuple[int, int]]) -> Bool[Array, "h w offsets"]:
    """Static mask: is `(h + dh, w + dw)` inside the `h x w` grid, for every offset."""
    hh = np.arange(h)[:, None, None]
    ww = np.arange(w)[None, :, None]
    dh = np.asarray([o[0] for o in offsets])[None, None, :]
    dw = np.asarray([o[1] for o in offsets])[None, None, :]
    return jnp.asarray((hh + dh >= 0) & (hh + dh < h) & (ww + dw >= 0) & (ww + dw < w))


def shifted_rows(a: Array, offsets: list[int], fill) -> Array:
    """`out[k, ..., q] = a[..., q + offsets[k]]` along the last axis, `fill` outside: one
    padded copy of the (small) array and a slice per offset."""
    n, reach = a.shape[-1], max([abs(o) for o in offsets] + [0])
    padded = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(reach, reach)], constant_values=fill)
    return jnp.stack([lax.slice_in_dim(padded, reach + o, reach + o + n, axis=-1) for o in offsets])


def next_pow2(n: int) -> int:
    """Smallest power of two `>= n` (Triton block shapes must be powers of two)."""
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


# Pieces shared by the Pallas kernels.


def triton_params(num_warps: int, num_stages: int):
    """`pltriton.CompilerParams`: they select Pallas' Triton backend on a GPU."""
    require_pallas()
    return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)


@dataclasses.dataclass(frozen=True)
class RowBlockSizes:
    """Tile of one program of a `frame_rows_call` kernel: `block_h` rows of a frame (all `W`
    columns, padded to a power of two), `block_d` features per step of each loop over `D`
    (a power of two), and Triton's `num_warps`, `num_stages`."""

    block_h: int = 1
    block_d: int = 64
    num_warps: int = 4
    num_stages: int = 2


def frame_rows_call(kernel, v, valid, param, scale, *, out_dtypes, block_sizes, interpret, name):
    """`pallas_call` of a kernel run once per `(frame, block of rows)`, reading the tokens,
    the mask as int32 and the float32 pair `(param, scale)`, and writing one `(T, H, W)`
    array per dtype of `out_dtypes`. Float64 tokens are scaled and narrowed first: Triton
    has no use for float64 here."""
    t, h, w, _ = v.shape
    if v.dtype == jnp.float64:
        v, scale = load_f32(v, scale), 1.0
    params = jnp.stack([jnp.asarray(param, jnp.float32), jnp.asarray(scale, jnp.float32)])
    return pl.pallas_call(
        kernel,
        out_shape=tuple(jax.ShapeDtypeStruct((t, h, w), dtype) for dtype in out_dtypes),
        grid=(t, pl.cdiv(h, block_sizes.block_h)),
        compiler_params=triton_params(block_sizes.num_warps, block_sizes.num_stages),
        interpret=interpret,
        name=name,
    )(v, valid.astype(jnp.int32), params)


# Traced inside a kernel body.


def load_tile(ref, frame, rows, cols, feats, mask):
    """`ref[frame, rows, cols, feats]` as a float32 `(rows, cols, feats)` tile, 0 outside
    `mask`. Indices arrive clamped into the array, so interpret mode never reads outside."""
    index = ref.at[frame, rows[:, None, None], cols[None, :, None], feats[None, None, :]]
    return pltriton.load(index, mask=mask, other=0.0).astype(jnp.float32)


def tile_dot_products(x_ref, frame, rows, cols, inside, partner_frame, partners, scale, block_d):
    """Dot products of a query tile with several partner tiles, streamed over D.

    The query tile is `x_ref[frame, rows, cols]` (masked by `inside`); each partner is
    `(rows, cols, mask)` in `partner_frame`. Returns per partner the dot products and the
    partner's squared norms, and the queries' squared norms, each `(rows, cols)`, all
    accumulated chunk by chunk of `block_d` features in the same order.
    """
    d = x_ref.shape[-1]

    def step(i, carry):
        dots, sqs, own = carry
        feats = i * block_d + jnp.arange(block_d)
        fmask = (feats < d)[None, None, :]
        feats = jnp.minimum(feats, d - 1)
        q = load_tile(x_ref, frame, rows, cols, feats, inside[..., None] & fmask) * scale
        new_dots, new_sqs = [], []
        for (p_rows, p_cols, p_mask), dot, sq in zip(partners, dots, sqs):
            p = load_tile(x_ref, partner_frame, p_rows, p_cols, feats, p_mask[..., None] & fmask) * scale
            new_dots.append(dot + jnp.sum(q * p, axis=-1))
            new_sqs.append(sq + jnp.sum(p * p, axis=-1))
        return new_dots, new_sqs, own + jnp.sum(q * q, axis=-1)

    zeros = jnp.zeros(inside.shape, jnp.float32)
    k = len(partners)
    return lax.fori_loop(0, pl.cdiv(d, block_d), step, ([zeros] * k, [zeros] * k, zeros))
