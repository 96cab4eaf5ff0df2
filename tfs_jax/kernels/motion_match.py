"""Motion matching: each token's best match in the previous frame (algorithm §1).

For a valid token at `(t, h, w)`, `t >= 1`, the candidates are the valid tokens of frame
`t-1` at `(h+dh, w+dw)`, `dh, dw` in `[-r, r]`. Each scores `cos(v, v_cand)`, the `(0, 0)`
candidate plus `stay_bias`; the best score wins, ties to the first candidate in row-major
order of `(dh, dw)`.

Layout (after jax's `pallas/ops/gpu/layer_norm.py`): the Pallas kernel, its jitted
wrapper, the public `motion_match`, the XLA path (`motion_match_xla`, written to be fast on
XLA:CPU), and at the bottom the plain `motion_match_reference` that tests hold both paths
against. The kernel runs one program per `(frame, block of rows)`, streams `D` in chunks,
and keeps the `(2r+1)^2` running dot products and candidate norms of its tile in
registers; every candidate score is then formed and compared in the same order as the XLA
path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.kernels.common import RowBlockSizes
from tfs_jax.kernels.common import frame_rows_call
from tfs_jax.kernels.common import gathered_offset_dots
from tfs_jax.kernels.common import grid_offsets
from tfs_jax.kernels.common import in_grid
from tfs_jax.kernels.common import next_pow2
from tfs_jax.kernels.common import offset_dots
from tfs_jax.kernels.common import scaled_loads
from tfs_jax.kernels.common import shifted_rows
from tfs_jax.kernels.common import tile_dot_products
from tfs_jax.kernels.common import variadic_sum
from tfs_jax.kernels.dispatch import pltriton
from tfs_jax.kernels.dispatch import resolve_impl
from tfs_jax.primitives import floored_norm
from tfs_jax.tokens import load_f32


# Candidates whose scores are within this of the best count as tied, and the first in
# row-major order wins. Identical candidate vectors must tie exactly (algorithm §1), but the same
# dot product summed along two code paths (or two outputs of one XLA:CPU reduction) can
# differ in the last bits; 2**-20 is far above that noise and far below the algorithm's near-tie
# width (1e-5), inside which either decision is correct. The stay bias (1e-4) is larger.
TIE_WINDOW = 2.0**-20


BlockSizes = RowBlockSizes  # one program per (frame, block of rows)


def candidate_offsets(radius: int) -> list[tuple[int, int]]:
    """The `(dh, dw)` offsets in row-major order: the tie order of algorithm §1."""
    return grid_offsets(radius, radius)


def _motion_kernel(
    x_ref, valid_ref, params_ref, best_ref, has_ref, *, radius, block_h, block_w, block_d
):
    """One program: frame `t = program_id(0)`, rows `program_id(1) * block_h + [0, block_h)`.

    Writes the index (into `candidate_offsets(radius)`) of the best candidate and whether
    the token had one. `params_ref` holds `(stay_bias, scale)`.
    """
    _, h, w, d = x_ref.shape
    t = pl.program_id(0)
    prev = jnp.maximum(t - 1, 0)
    rows = pl.program_id(1) * block_h + jnp.arange(block_h)
    cols = jnp.arange(block_w)
    inside = (rows[:, None] < h) & (cols[None, :] < w)
    rows_c, cols_c = jnp.minimum(rows, h - 1), jnp.minimum(cols, w - 1)
    offsets = candidate_offsets(radius)
    cand_rows, cand_cols, cand_in = [], [], []
    for dh, dw in offsets:
        r, c = rows + dh, cols + dw
        cand_in.append(
            inside & (t >= 1) & ((r >= 0) & (r < h))[:, None] & ((c >= 0) & (c < w))[None, :]
        )
        cand_rows.append(jnp.clip(r, 0, h - 1))
        cand_cols.append(jnp.clip(c, 0, w - 1))
    stay_bias, scale = params_ref[0], params_ref[1]
    partners = list(zip(cand_rows, cand_cols, cand_in))
    dots, sqs, own = tile_dot_products(x_ref, t, rows_c, cols_c, inside, prev, partners, scale, block_d)

    own_norm = floored_norm(own)
    centre = offsets.index((0, 0))
    scores = []
    for k in range(len(offsets)):
        ok = cand_in[k] & (
            pltriton.load(valid_ref.at[prev, cand_rows[k][:, None], cand_cols[k][None, :]],
                          mask=cand_in[k], other=0) != 0
        )
        score = dots[k] / (own_norm * floored_norm(sqs[k]))
        if k == centre:
            score = score + stay_bias
        scores.append(jnp.where(ok, score, -jnp.inf))
    top = functools.reduce(jnp.maximum, scores)
    any_candidate = top > -jnp.inf
    best = jnp.full((block_h, block_w), centre, jnp.int32)
    for k in reversed(range(len(offsets))):  # the last assignment is the first candidate
        best = jnp.where(scores[k] >= top - TIE_WINDOW, k, best)
    own_valid = pltriton.load(
        valid_ref.at[t, rows_c[:, None], cols_c[None, :]], mask=inside, other=0
    ) != 0
    has = any_candidate & own_valid
    # Stores take the unclamped indices: in interpret mode a masked-off lane that aliased a
    # real one would write back the stale value.
    out = (t, rows[:, None], cols[None, :])
    pltriton.store(best_ref.at[out], jnp.where(has, best, centre), mask=inside)
    pltriton.store(has_ref.at[out], has.astype(jnp.int32), mask=inside)


@functools.partial(jax.jit, static_argnames=("radius", "block_sizes", "interpret"))
def motion_match_pallas(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    stay_bias: Float[Array, ""] | float,
    scale: Float[Array, ""] | float = 1.0,
    *,
    radius: int = 1,
    block_sizes: BlockSizes = BlockSizes(),
    interpret: bool = False,
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """`motion_match` by the Pallas kernel (Triton on GPU, or interpreted)."""
    bs = block_sizes
    kernel = functools.partial(
        _motion_kernel, radius=radius, block_h=bs.block_h, block_w=next_pow2(v.shape[2]),
        block_d=bs.block_d,
    )
    best, has = frame_rows_call(
        kernel, v, valid, stay_bias, scale, out_dtypes=(jnp.int32, jnp.int32), block_sizes=bs,
        interpret=interpret, name="tfs_motion_match",
    )
    offsets = jnp.asarray(candidate_offsets(radius), jnp.int32)
    has = has.astype(bool)
    return jnp.where(has[..., None], offsets[best], 0), has


def motion_match(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    stay_bias: Float[Array, ""] | float,
    *,
    radius: int = 1,
    impl: str = "auto",
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """Motion vector `(dh, dw)` of every token and whether it had a valid candidate.

    The best score wins; candidates within `TIE_WINDOW` of it tie, and the first in
    row-major order of `(dh, dw)` wins (algorithm §1).

    Args:
      v: tokens, any float dtype; whatever invalid tokens hold (NaN included) is ignored.
      valid: which tokens are real (and finite).
      stay_bias: bonus of the zero-offset candidate.
      radius: search radius `r`.
      impl: see `tfs_jax.kernels`.
      scale: power-of-two factor applied to every token first (`valid_and_scale`).

    Returns:
      `(motion, has_candidate)`: int32 `(dh, dw)`, `(0, 0)` where there was no candidate.
    """
    kind = resolve_impl(impl)
    if kind == "xla":
        return motion_match_xla(v, valid, stay_bias, radius=radius, scale=scale)
    return motion_match_pallas(
        v, valid, stay_bias, scale, radius=radius, interpret=kind == "interpret"
    )


# ----------------------------------------------------------------------------- XLA path


def motion_match_xla(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    stay_bias: Float[Array, ""] | float,
    *,
    radius: int = 1,
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Int[Array, "t h w 2"], Bool[Array, "t h w"]]:
    """Plain-`jnp` `motion_match`, written for XLA:CPU.

    The video is read as `T*H*W` flat tokens: candidate `(dh, dw)` of the query at flat
    index `q` sits at `q - H*W + dh*W + dw`. One multi-output reduction over `D` computes
    every query's `(2r+1)^2` dot products and its squared norm, reading the shifted
    candidates in place; the few queries at the start of frame 1 whose candidate indices
    would fall below 0 go through a small gather. Candidates outside the grid (a shift
    across a row or the frame edge) are masked afterwards.
    """
    t, h, w, d = v.shape
    n, tn = h * w, t * h * w
    if t == 1:
        return jnp.zeros((t, h, w, 2), jnp.int32), jnp.zeros((t, h, w), bool)
    offsets = candidate_offsets(radius)
    flat = [-n + dh * w + dw for dh, dw in offsets]
    dots, sq = _query_dots(v.reshape(tn, d), scale, n, radius * (w + 1), flat)
    norm = floored_norm(sq)
    valid_flat = valid.reshape(tn)
    cand_norm = shifted_rows(norm, flat, 1.0)[:, n:]
    in_frame = in_grid(h, w, offsets).reshape(n, -1).T[:, None, :]
    cand_valid = shifted_rows(valid_flat, flat, False)[:, n:]
    cand_valid = (cand_valid.reshape(len(flat), t - 1, n) & in_frame).reshape(len(flat), -1)
    score = dots / (norm[None, n:] * cand_norm)
    centre = offsets.index((0, 0))
    score = jnp.where(cand_valid, score.at[centre].add(stay_bias), -jnp.inf)
    top = jnp.max(score, axis=0)
    best = jnp.argmax(score >= top - TIE_WINDOW, axis=0)  # first candidate tied with the top
    has = valid_flat[n:] & jnp.any(cand_valid, axis=0)
    motion = jnp.where(has[:, None], jnp.asarray(offsets, jnp.int32)[best], 0)
    motion = jnp.concatenate([jnp.zeros((n, 2), jnp.int32), motion])
    has = jnp.concatenate([jnp.zeros((n,), bool), has])
    return motion.reshape(t, h, w, 2), has.reshape(t, h, w)


def _query_dots(xf, scale, n, reach, flat):
    """Dots of every token of frames `>= 1` with its candidates (`(k, T*H*W - n)`), and the
    squared norm of every token (`(T*H*W,)`)."""
    tn = xf.shape[0]
    start = min(n + reach, tn)  # first query whose candidates all have an index >= 0
    # On a grid at most `radius` rows high, the forward offsets (`dh * W + dw > n`) reach
    # past the last token: those last queries go through the gather too (their candidates
    # outside the grid are masked by the caller).
    stop = max(start, tn - max(0, max(flat)))
    dots, sq = [], []
    for lo, hi, bulk in ((n, start, False), (start, stop, True), (stop, tn, False)):
        if hi > lo:
            part = (offset_dots(xf, scale, lo, hi, flat) if bulk
                    else gathered_offset_dots(xf, scale, np.arange(lo, hi), flat))
            dots.append(part[0])
            sq.append(part[1])
    # Frame 0 is only ever a candidate: its squared norms alone.
    first, load = scaled_loads(xf[:n], scale)
    first_sq = variadic_sum([first * load(xf[:n])], axis=1)[0]
    return jnp.concatenate(dots, axis=1), jnp.concatenate([first_sq] + sq)


# ----------------------------------------------------------------------------- reference


def motion_match_reference(v, valid, stay_bias, *, radius=1, scale=1.0):
    """Algorithm §1 written plainly, to hold both paths against (same arguments and results as
    `motion_match_xla`): one shifted copy of the previous frame per candidate, cosines by
    `jnp.sum`, the first maximum wins (no tie window: tests skip genuine near-ties)."""
    t, h, w, _ = v.shape
    x = jnp.where(valid[..., None], load_f32(v, scale), 0.0)
    norm = floored_norm(jnp.sum(x * x, axis=-1))
    pad = ((0, 0), (radius, radius), (radius, radius))
    prev_x = jnp.pad(x[:-1], pad + ((0, 0),))
    prev_norm = jnp.pad(norm[:-1], pad, constant_values=1.0)
    prev_valid = jnp.pad(valid[:-1], pad)
    scores = []
    for dh, dw in candidate_offsets(radius):
        window = (slice(None), slice(radius + dh, radius + dh + h), slice(radius + dw, radius + dw + w))
        score = jnp.sum(x[1:] * prev_x[window], axis=-1) / (norm[1:] * prev_norm[window])
        score = score + (stay_bias if (dh, dw) == (0, 0) else 0.0)
        scores.append(jnp.where(valid[1:] & prev_valid[window], score, -jnp.inf))
    scores = jnp.stack(scores, axis=-1)
    has = valid[1:] & jnp.any(scores > -jnp.inf, axis=-1)
    best = jnp.asarray(candidate_offsets(radius), jnp.int32)[jnp.argmax(scores, axis=-1)]
    motion = jnp.where(has[..., None], best, 0)
    motion = jnp.concatenate([jnp.zeros((1, h, w, 2), jnp.int32), motion])
    return motion, jnp.concatenate([jnp.zeros((1, h, w), bool), has])
