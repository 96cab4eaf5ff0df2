"""Focal reconstruction: how badly a token's spatial neighbours predict it (SPEC 3, Eq. 5).

Neighbours `P(i)` are the valid tokens of the same frame at `|dh| <= 1, |dw| <= 1`, the
token itself excluded. Weights `w_j = softmax_j(cos(v_i, v_j) / temperature)`,
`v_hat = sum_j w_j v_j`, raw focal saliency `1 - cos(v_i, v_hat)` clamped to [0, 2], 0 where
`P(i)` is empty.

Layout as in `motion_match.py`: kernel, jitted wrapper, public op, `jnp` reference. The
kernel runs one program per `(frame, block of rows)` and streams `D` twice: first the eight
neighbour dot products and norms (the softmax weights), then `v_hat` chunk by chunk, of
which only `|v_hat|^2` and `v . v_hat` are kept.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.kernels.common import floored_norm
from tfs_jax.kernels.common import gathered_offset_dots
from tfs_jax.kernels.common import in_grid
from tfs_jax.kernels.common import load_f32
from tfs_jax.kernels.common import next_pow2
from tfs_jax.kernels.common import offset_dots
from tfs_jax.kernels.common import shift_flat
from tfs_jax.kernels.common import variadic_sum
from tfs_jax.kernels.dispatch import resolve_impl

NEIGHBOUR_OFFSETS = tuple(
    (dh, dw) for dh in (-1, 0, 1) for dw in (-1, 0, 1) if (dh, dw) != (0, 0)
)


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile of one Pallas program: `block_h` rows of a frame (all `W` columns, padded to a
    power of two), `block_d` features per step of each loop over `D` (a power of two)."""

    block_h: int = 1
    block_d: int = 64
    num_warps: int = 4
    num_stages: int = 2


def _load_tile(ref, frame, rows, cols, feats, mask):
    """`ref[frame, rows, cols, feats]` as a float32 `(rows, cols, feats)` tile, 0 outside
    `mask` (indices clamped into the array)."""
    index = ref.at[frame, rows[:, None, None], cols[None, :, None], feats[None, None, :]]
    return pltriton.load(index, mask=mask, other=0.0).astype(jnp.float32)


def _focal_kernel(x_ref, valid_ref, params_ref, raw_ref, count_ref, *, block_h, block_w, block_d):
    """One program: frame `program_id(0)`, rows `program_id(1) * block_h + [0, block_h)`.
    `params_ref` holds `(1 / temperature, scale)`."""
    _, h, w, d = x_ref.shape
    t = pl.program_id(0)
    rows = pl.program_id(1) * block_h + jnp.arange(block_h)
    cols = jnp.arange(block_w)
    inside = (rows[:, None] < h) & (cols[None, :] < w)
    rows_c, cols_c = jnp.minimum(rows, h - 1), jnp.minimum(cols, w - 1)
    own_valid = pltriton.load(
        valid_ref.at[t, rows_c[:, None], cols_c[None, :]], mask=inside, other=0
    ) != 0
    nb_rows, nb_cols, nb_ok = [], [], []
    for dh, dw in NEIGHBOUR_OFFSETS:
        r, c = rows + dh, cols + dw
        in_frame = inside & (r[:, None] >= 0) & (r[:, None] < h) & (c[None, :] >= 0) & (c[None, :] < w)
        r, c = jnp.clip(r, 0, h - 1), jnp.clip(c, 0, w - 1)
        ok = in_frame & (
            pltriton.load(valid_ref.at[t, r[:, None], c[None, :]], mask=in_frame, other=0) != 0
        )
        nb_rows.append(r)
        nb_cols.append(c)
        nb_ok.append(ok)
    inv_temperature, scale = params_ref[0], params_ref[1]
    num_steps = pl.cdiv(d, block_d)

    def features(i):
        feats = i * block_d + jnp.arange(block_d)
        return jnp.minimum(feats, d - 1), (feats < d)[None, None, :]

    def similarities(i, carry):
        dots, sqs, own = carry
        feats, fmask = features(i)
        q = _load_tile(x_ref, t, rows_c, cols_c, feats, inside[..., None] & fmask) * scale
        new_dots, new_sqs = [], []
        for j in range(len(NEIGHBOUR_OFFSETS)):
            mask = nb_ok[j][..., None] & fmask
            nb = _load_tile(x_ref, t, nb_rows[j], nb_cols[j], feats, mask) * scale
            new_dots.append(dots[j] + jnp.sum(q * nb, axis=-1))
            new_sqs.append(sqs[j] + jnp.sum(nb * nb, axis=-1))
        return new_dots, new_sqs, own + jnp.sum(q * q, axis=-1)

    zeros = jnp.zeros((block_h, block_w), jnp.float32)
    k = len(NEIGHBOUR_OFFSETS)
    dots, sqs, own = lax.fori_loop(0, num_steps, similarities, ([zeros] * k, [zeros] * k, zeros))
    own_norm = floored_norm(own)
    logits = [
        jnp.where(nb_ok[j], dots[j] / (own_norm * floored_norm(sqs[j])) * inv_temperature, -jnp.inf)
        for j in range(k)
    ]
    count = sum(ok.astype(jnp.int32) for ok in nb_ok)
    top = functools.reduce(jnp.maximum, logits)
    top = jnp.where(count > 0, top, 0.0)
    exps = [jnp.where(nb_ok[j], jnp.exp(logits[j] - top), 0.0) for j in range(k)]
    total = jnp.maximum(sum(exps), 1e-30)
    weights = [e / total for e in exps]

    def reconstruction(i, carry):
        hat_sq, hat_dot = carry
        feats, fmask = features(i)
        q = _load_tile(x_ref, t, rows_c, cols_c, feats, inside[..., None] & fmask) * scale
        hat = jnp.zeros_like(q)
        for j in range(k):
            mask = nb_ok[j][..., None] & fmask
            hat = hat + weights[j][..., None] * (
                _load_tile(x_ref, t, nb_rows[j], nb_cols[j], feats, mask) * scale
            )
        return hat_sq + jnp.sum(hat * hat, axis=-1), hat_dot + jnp.sum(q * hat, axis=-1)

    hat_sq, hat_dot = lax.fori_loop(0, num_steps, reconstruction, (zeros, zeros))
    raw = jnp.clip(1.0 - hat_dot / (own_norm * floored_norm(hat_sq)), 0.0, 2.0)
    keep = own_valid & (count > 0)
    out = (t, rows[:, None], cols[None, :])
    pltriton.store(raw_ref.at[out], jnp.where(keep, raw, 0.0), mask=inside)
    pltriton.store(count_ref.at[out], jnp.where(own_valid, count, 0), mask=inside)


@functools.partial(jax.jit, static_argnames=("block_sizes", "interpret"))
def focal_reconstruction_pallas(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    temperature: Float[Array, ""] | float,
    scale: Float[Array, ""] | float = 1.0,
    *,
    block_sizes: BlockSizes = BlockSizes(),
    interpret: bool = False,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """`focal_reconstruction` by the Pallas kernel (Triton on GPU, or interpreted)."""
    t, h, w, _ = v.shape
    if v.dtype == jnp.float64:
        v, scale = load_f32(v, scale), 1.0
    bs = block_sizes
    params = jnp.stack(
        [1.0 / jnp.asarray(temperature, jnp.float32), jnp.asarray(scale, jnp.float32)]
    )
    kernel = functools.partial(
        _focal_kernel, block_h=bs.block_h, block_w=next_pow2(w), block_d=bs.block_d
    )
    return pl.pallas_call(
        kernel,
        out_shape=(
            jax.ShapeDtypeStruct((t, h, w), jnp.float32),
            jax.ShapeDtypeStruct((t, h, w), jnp.int32),
        ),
        grid=(t, pl.cdiv(h, bs.block_h)),
        compiler_params=pltriton.CompilerParams(num_warps=bs.num_warps, num_stages=bs.num_stages),
        interpret=interpret,
        name="tfs_focal_reconstruction",
    )(v, valid.astype(jnp.int32), params)


def focal_reconstruction(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    temperature: Float[Array, ""] | float,
    *,
    impl: str = "auto",
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Raw focal saliency and neighbour count `|P(i)|` of every token.

    Args:
      v: tokens, any float dtype; whatever invalid tokens hold (NaN included) is ignored.
      valid: which tokens are real (and finite).
      temperature: softmax temperature (>= 1e-6).
      impl: see `tfs_jax.kernels`.
      scale: power-of-two factor applied to every token first (`valid_and_scale`).

    Returns:
      `(raw, count)`: raw is 0 where the token is invalid or has no neighbour.
    """
    kind = resolve_impl(impl)
    if kind == "reference":
        return focal_reconstruction_reference(v, valid, temperature, scale=scale)
    return focal_reconstruction_pallas(
        v, valid, temperature, scale, interpret=kind == "interpret"
    )


# ----------------------------------------------------------------------------- reference

# Same-frame offsets within two rows/columns whose dot products the reference computes:
# the "forward" half (the other half is the same dot stored at the partner). Distance one
# gives the softmax logits; distance two the neighbour-neighbour dots of |v_hat|^2.
_FORWARD = tuple((dh, dw) for dh in range(3) for dw in range(-2, 3) if dh > 0 or dw > 0)
# |v_hat|^2 from neighbour dot products loses accuracy when v_hat nearly cancels: below
# this ratio |v_hat|^2 / (sum_j w_j |v_j|)^2 the error could approach SPEC's tolerance
# (measured: <= 2e-6 on raw above it), and the video takes the direct path instead.
_CANCELLATION = 1e-3


def focal_reconstruction_reference(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    temperature: Float[Array, ""] | float,
    *,
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Plain-`jnp` `focal_reconstruction`, written for XLA:CPU.

    One multi-output reduction over the flattened video computes every dot product between
    tokens of a frame at most two rows and columns apart (`_gram`). Everything else follows
    from those scalars, without forming `v_hat`: `v . v_hat = sum_j w_j (v . v_j)` and
    `|v_hat|^2 = sum_jk w_j w_k (v_j . v_k)`. Where the neighbours nearly cancel, that
    quadratic form is inaccurate; if any token of the video is in that regime, `v_hat` is
    formed explicitly for the whole video instead (`_direct_terms`, about 3x slower).
    """
    t, h, w, _ = v.shape
    tn = t * h * w
    gram, sq = _gram(v, scale)
    norm = floored_norm(sq)
    valid_flat = valid.reshape(tn)
    in_frame = in_grid(h, w, list(NEIGHBOUR_OFFSETS)).reshape(h * w, -1).T[:, None, :]
    nb_valid = jnp.stack([shift_flat(valid_flat, _flat(o, w), False) for o in NEIGHBOUR_OFFSETS])
    nb_valid = (nb_valid.reshape(-1, t, h * w) & in_frame).reshape(-1, tn)
    dots = jnp.stack([
        jnp.where(nb_valid[j], gram((0, 0), o), 0.0) for j, o in enumerate(NEIGHBOUR_OFFSETS)
    ])
    nb_norm = jnp.stack([shift_flat(norm, _flat(o, w), 1.0) for o in NEIGHBOUR_OFFSETS])
    logits = jnp.where(nb_valid, dots / (norm * nb_norm) / temperature, -jnp.inf)
    count = jnp.sum(nb_valid, axis=0, dtype=jnp.int32)
    top = jnp.where(count > 0, jnp.max(logits, axis=0), 0.0)
    exps = jnp.where(nb_valid, jnp.exp(logits - top), 0.0)
    weights = exps / jnp.maximum(jnp.sum(exps, axis=0), 1e-30)
    hat_dot = jnp.sum(weights * dots, axis=0)
    hat_sq = jnp.zeros((tn,), jnp.float32)
    for j, a in enumerate(NEIGHBOUR_OFFSETS):
        for k in range(j, len(NEIGHBOUR_OFFSETS)):
            both = nb_valid[j] & nb_valid[k]
            pair = jnp.where(both, gram(a, NEIGHBOUR_OFFSETS[k]), 0.0)
            hat_sq = hat_sq + (1.0 if j == k else 2.0) * weights[j] * weights[k] * pair
    hat_sq = jnp.maximum(hat_sq, 0.0)
    spread = jnp.sum(weights * jnp.where(nb_valid, nb_norm, 0.0), axis=0)
    cancels = valid_flat & (count > 0) & (hat_sq < _CANCELLATION * spread * spread)
    hat_dot, hat_sq = lax.cond(
        jnp.any(cancels),
        lambda: _direct_terms(v, valid, weights.reshape(-1, t, h, w), scale),
        lambda: (hat_dot, hat_sq),
    )
    raw = jnp.clip(1.0 - hat_dot / (norm * floored_norm(hat_sq)), 0.0, 2.0)
    raw = jnp.where(valid_flat & (count > 0), raw, 0.0)
    return raw.reshape(t, h, w), jnp.where(valid_flat, count, 0).reshape(t, h, w)


def _flat(offset: tuple[int, int], w: int) -> int:
    return offset[0] * w + offset[1]


def _gram(v, scale):
    """Dot products of same-frame tokens up to two rows and columns apart.

    Returns `(gram, sq)`: `sq` the squared norms `(T*H*W,)`, and `gram(a, b)` the `(T*H*W,)`
    array of `v_{i+a} . v_{i+b}` for 2-D offsets `a`, `b` (zero where `i+a` falls outside
    the video; pairs that leave the frame must be masked by the caller).
    """
    t, h, w, d = v.shape
    tn = t * h * w
    xf = v.reshape(tn, d)
    flat = [_flat(o, w) for o in _FORWARD]
    stop = max(tn - max(flat), 0)  # last query whose partners all lie inside the video
    dots, sq = [], []
    if stop > 0:
        bulk_dots, bulk_sq = offset_dots(xf, scale, 0, stop, flat)
        dots.append(bulk_dots)
        sq.append(bulk_sq)
    if stop < tn:
        tail_dots, tail_sq = gathered_offset_dots(xf, scale, np.arange(stop, tn), flat)
        dots.append(tail_dots)
        sq.append(tail_sq)
    forward, sq = jnp.concatenate(dots, axis=1), jnp.concatenate(sq)

    def gram(a, b):
        c = (b[0] - a[0], b[1] - a[1])
        if c == (0, 0):
            return shift_flat(sq, _flat(a, w), 0.0)
        if c in _FORWARD:
            return shift_flat(forward[_FORWARD.index(c)], _flat(a, w), 0.0)
        return shift_flat(forward[_FORWARD.index((-c[0], -c[1]))], _flat(b, w), 0.0)

    return gram, sq


def _direct_terms(v, valid, weights, scale):
    """`(v . v_hat, |v_hat|^2)` with `v_hat` formed explicitly, one frame per loop step.
    `v_hat` comes from a vectorised elementwise pass kept apart from the reduction (an
    `optimization_barrier`): fused into it, the eight-term sum would run scalar."""
    t, h, w, _ = v.shape

    def step(i, acc):
        ok = lax.dynamic_index_in_dim(valid, i, keepdims=False)
        frame = load_f32(lax.dynamic_index_in_dim(v, i, keepdims=False), scale)
        x = jnp.pad(jnp.where(ok[..., None], frame, 0.0), ((1, 1), (1, 1), (0, 0)))
        wts = lax.dynamic_index_in_dim(weights, i, axis=1, keepdims=False)
        hat = sum(
            wts[j][..., None] * x[1 + dh : 1 + dh + h, 1 + dw : 1 + dw + w]
            for j, (dh, dw) in enumerate(NEIGHBOUR_OFFSETS)
        )
        own, hat = lax.optimization_barrier((x[1 : 1 + h, 1 : 1 + w], hat))
        terms = jnp.stack(variadic_sum([own * hat, hat * hat], axis=2))
        return lax.dynamic_update_index_in_dim(acc, terms, i, axis=1)

    terms = lax.fori_loop(0, t, step, jnp.zeros((2, t, h, w), jnp.float32))
    return terms[0].reshape(-1), terms[1].reshape(-1)
