"""Focal reconstruction: how badly a token's spatial neighbours predict it (algorithm §3, Eq. 5).

Neighbours `P(i)` are the valid tokens of the same frame at `|dh| <= 1, |dw| <= 1`, the
token itself excluded. Weights `w_j = softmax_j(cos(v_i, v_j) / temperature)`,
`v_hat = sum_j w_j v_j`, raw focal saliency `1 - cos(v_i, v_hat)` clamped to [0, 2], 0 where
`P(i)` is empty.

Layout as in `motion_match.py`: kernel, jitted wrapper, public op, XLA path, plain
reference. The kernel runs one program per `(frame, block of rows)` and streams `D` twice: first the eight
neighbour dot products and norms (the softmax weights), then `v_hat` chunk by chunk, of
which only `|v_hat|^2` and `v . v_hat` are kept.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.experimental import pallas as pl
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.kernels.common import RowBlockSizes
from tfs_jax.kernels.common import frame_rows_call
from tfs_jax.kernels.common import in_grid
from tfs_jax.kernels.common import load_tile
from tfs_jax.kernels.common import next_pow2
from tfs_jax.kernels.common import scaled_loads
from tfs_jax.kernels.common import shifted_rows
from tfs_jax.kernels.common import tile_dot_products
from tfs_jax.kernels.common import variadic_sum
from tfs_jax.kernels.dispatch import pltriton
from tfs_jax.kernels.dispatch import resolve_impl
from tfs_jax.primitives import floored_norm
from tfs_jax.tokens import load_f32

NEIGHBOUR_OFFSETS = tuple(
    (dh, dw) for dh in (-1, 0, 1) for dw in (-1, 0, 1) if (dh, dw) != (0, 0)
)


BlockSizes = RowBlockSizes  # one program per (frame, block of rows)


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
        in_frame = inside & ((r >= 0) & (r < h))[:, None] & ((c >= 0) & (c < w))[None, :]
        r, c = jnp.clip(r, 0, h - 1), jnp.clip(c, 0, w - 1)
        ok = in_frame & (
            pltriton.load(valid_ref.at[t, r[:, None], c[None, :]], mask=in_frame, other=0) != 0
        )
        nb_rows.append(r)
        nb_cols.append(c)
        nb_ok.append(ok)
    inv_temperature, scale = params_ref[0], params_ref[1]
    partners = list(zip(nb_rows, nb_cols, nb_ok))
    dots, sqs, own = tile_dot_products(x_ref, t, rows_c, cols_c, inside, t, partners, scale, block_d)
    k = len(NEIGHBOUR_OFFSETS)
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

    def features(i):
        feats = i * block_d + jnp.arange(block_d)
        return jnp.minimum(feats, d - 1), (feats < d)[None, None, :]

    def reconstruction(i, carry):
        hat_sq, hat_dot = carry
        feats, fmask = features(i)
        q = load_tile(x_ref, t, rows_c, cols_c, feats, inside[..., None] & fmask) * scale
        hat = jnp.zeros_like(q)
        for j in range(k):
            mask = nb_ok[j][..., None] & fmask
            hat = hat + weights[j][..., None] * (
                load_tile(x_ref, t, nb_rows[j], nb_cols[j], feats, mask) * scale
            )
        return hat_sq + jnp.sum(hat * hat, axis=-1), hat_dot + jnp.sum(q * hat, axis=-1)

    zeros = jnp.zeros((block_h, block_w), jnp.float32)
    hat_sq, hat_dot = lax.fori_loop(0, pl.cdiv(d, block_d), reconstruction, (zeros, zeros))
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
    bs = block_sizes
    kernel = functools.partial(
        _focal_kernel, block_h=bs.block_h, block_w=next_pow2(v.shape[2]), block_d=bs.block_d
    )
    return frame_rows_call(
        kernel, v, valid, 1.0 / jnp.asarray(temperature, jnp.float32), scale,
        out_dtypes=(jnp.float32, jnp.int32), block_sizes=bs, interpret=interpret,
        name="tfs_focal_reconstruction",
    )


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
    if kind == "xla":
        return focal_reconstruction_xla(v, valid, temperature, scale=scale)
    return focal_reconstruction_pallas(
        v, valid, temperature, scale, interpret=kind == "interpret"
    )


# ----------------------------------------------------------------------------- XLA path

# Same-frame offsets within two rows/columns whose dot products the XLA path computes:
# the "forward" half (the other half is the same dot stored at the partner). Distance one
# gives the softmax logits; distance two the neighbour-neighbour dots of |v_hat|^2.
_FORWARD = tuple((dh, dw) for dh in range(3) for dw in range(-2, 3) if dh > 0 or dw > 0)
# |v_hat|^2 from neighbour dot products loses accuracy when v_hat nearly cancels: below
# this ratio |v_hat|^2 / (sum_j w_j |v_j|)^2 the error could approach the algorithm's tolerance
# (measured: <= 2e-6 on raw above it), and the video takes the direct path instead.
_CANCELLATION = 1e-3


def focal_reconstruction_xla(
    v: Float[Array, "t h w d"],
    valid: Bool[Array, "t h w"],
    temperature: Float[Array, ""] | float,
    *,
    scale: Float[Array, ""] | float = 1.0,
) -> tuple[Float[Array, "t h w"], Int[Array, "t h w"]]:
    """Plain-`jnp` `focal_reconstruction`, written for XLA:CPU.

    One multi-output reduction over the flattened video computes every dot product between
    tokens of a frame at most two rows and columns apart (`_gram_table`). Everything else
    follows from those scalars, without forming `v_hat`: `v . v_hat = sum_j w_j (v . v_j)`
    and `|v_hat|^2 = sum_jk w_j w_k (v_j . v_k)`. Where the neighbours nearly cancel, that
    quadratic form is inaccurate; if any token of the video is in that regime, `v_hat` is
    formed explicitly for the whole video instead (`_direct_terms`, about 3x slower).
    """
    t, h, w, _ = v.shape
    tn = t * h * w
    k = len(NEIGHBOUR_OFFSETS)
    table = _gram_table(v, scale)
    # Row and shift of `table` holding v_{i+a} . v_{i+b}, for neighbour offsets a and b.
    lookups = [((0, 0), o) for o in NEIGHBOUR_OFFSETS]  # v_i . v_j
    lookups += [(o, o) for o in NEIGHBOUR_OFFSETS]  # |v_j|^2
    pairs = [(j, m) for j in range(k) for m in range(j + 1, k)]
    lookups += [(NEIGHBOUR_OFFSETS[j], NEIGHBOUR_OFFSETS[m]) for j, m in pairs]
    rows, shifts = zip(*(_table_entry(a, b, w) for a, b in lookups))
    padded = jnp.pad(table, ((0, 0), (w + 1, w + 1)))
    values = jnp.stack([
        lax.slice_in_dim(padded[r], w + 1 + s, w + 1 + s + tn) for r, s in zip(rows, shifts)
    ])
    dots, nb_sq, pair_dots = values[:k], values[k : 2 * k], values[2 * k :]
    valid_flat = valid.reshape(tn)
    in_frame = in_grid(h, w, list(NEIGHBOUR_OFFSETS)).reshape(h * w, k).T[:, None, :]
    nb_valid = shifted_rows(valid_flat, [_flat(o, w) for o in NEIGHBOUR_OFFSETS], False)
    nb_valid = (nb_valid.reshape(k, t, h * w) & in_frame).reshape(k, tn)
    norm = floored_norm(table[0])
    nb_norm = floored_norm(nb_sq)
    logits = jnp.where(nb_valid, dots / (norm * nb_norm) / temperature, -jnp.inf)
    count = jnp.sum(nb_valid, axis=0, dtype=jnp.int32)
    top = jnp.where(count > 0, jnp.max(logits, axis=0), 0.0)
    exps = jnp.where(nb_valid, jnp.exp(logits - top), 0.0)
    weights = exps / jnp.maximum(_ordered_sum(exps[j] for j in range(k)), 1e-30)
    dots = jnp.where(nb_valid, dots, 0.0)
    nb_sq = jnp.where(nb_valid, nb_sq, 0.0)
    hat_dot = _ordered_sum(weights[j] * dots[j] for j in range(k))
    hat_sq = _ordered_sum(
        [weights[j] * weights[j] * nb_sq[j] for j in range(k)]
        + [2.0 * weights[j] * weights[m] * jnp.where(nb_valid[j] & nb_valid[m], pair_dots[p], 0.0)
           for p, (j, m) in enumerate(pairs)]
    )
    hat_sq = jnp.maximum(hat_sq, 0.0)
    spread = _ordered_sum(weights[j] * jnp.where(nb_valid[j], nb_norm[j], 0.0) for j in range(k))
    cancels = valid_flat & (count > 0) & (hat_sq < _CANCELLATION * spread * spread)
    hat_dot, hat_sq = _unless_cancelling(
        jnp.any(cancels), v, valid, weights.reshape(-1, t, h, w), scale, hat_dot, hat_sq
    )
    raw = jnp.clip(1.0 - hat_dot / (norm * floored_norm(hat_sq)), 0.0, 2.0)
    raw = jnp.where(valid_flat & (count > 0), raw, 0.0)
    return raw.reshape(t, h, w), jnp.where(valid_flat, count, 0).reshape(t, h, w)


def _ordered_sum(terms) -> Array:
    """Left-to-right sum of same-shape arrays: an elementwise chain whose result does not
    depend on the array's size (an axis reduction may be blocked differently)."""
    terms = list(terms)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _flat(offset: tuple[int, int], w: int) -> int:
    return offset[0] * w + offset[1]


def _table_entry(a, b, w) -> tuple[int, int]:
    """Where `_gram_table` keeps `v_{i+a} . v_{i+b}`: `(row, shift)` with the value for
    token `i` at `table[row, i + shift]`."""
    c = (b[0] - a[0], b[1] - a[1])
    if c == (0, 0):
        return 0, _flat(a, w)
    if c in _FORWARD:
        return 1 + _FORWARD.index(c), _flat(a, w)
    return 1 + _FORWARD.index((-c[0], -c[1])), _flat(b, w)


def _gram_table(v, scale) -> Float[Array, "rows n"]:
    """Squared norms (row 0) and the dot products `v_q . v_{q+o}` for every forward offset
    `o` of `_FORWARD` (rows 1..12), for every flat token `q`; pairs that leave the frame
    must be masked by the caller.

    One frame per loop step, the frame padded at its end so that every forward partner
    exists: every frame runs the same code, so frames of padding appended to the video
    change nothing on the real ones, bit for bit (algorithm §10).
    """
    t, h, w, d = v.shape
    n = h * w
    flat = [_flat(o, w) for o in _FORWARD]
    back, ahead = max(0, -min(flat)), max(flat)  # negative only for frames under 2 wide

    def step(i, acc):
        frame = lax.dynamic_index_in_dim(v, i, keepdims=False).reshape(n, d)
        cur, load = scaled_loads(frame, scale)
        partners = jnp.pad(load(frame), ((back, ahead), (0, 0)))
        terms = [cur * load(frame)] + [cur * partners[back + o : back + o + n] for o in flat]
        return lax.dynamic_update_index_in_dim(acc, jnp.stack(variadic_sum(terms, axis=1)), i, 1)

    table = lax.fori_loop(0, t, step, jnp.zeros((1 + len(flat), t, n), jnp.float32))
    return table.reshape(1 + len(flat), t * n)


def _direct_unless_fast(cancels, v, valid, weights, scale, hat_dot, hat_sq):
    """`(hat_dot, hat_sq)` from the fast path, or from `_direct_terms` where `cancels`."""
    return lax.cond(
        cancels, lambda: _direct_terms(v, valid, weights, scale), lambda: (hat_dot, hat_sq)
    )


@jax.custom_batching.custom_vmap
def _batched_direct_unless_fast(*args):
    return _direct_unless_fast(*args)


@_batched_direct_unless_fast.def_vmap
def _batched_rule(axis_size, in_batched, cancels, *args):
    """Under `vmap`, a `cond` on a batched predicate becomes a `select` that runs the
    direct path for every video. Here it runs (for the whole batch, then selected per video)
    only when some video of the batch needs it: each video's result is what it gets alone."""
    axes = [0 if b else None for b in in_batched[1:]]

    def whole_batch(x, b):
        return x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))

    fast = tuple(whole_batch(x, b) for x, b in zip(args[-2:], in_batched[-2:]))
    pick = whole_batch(cancels, in_batched[0])[:, None]

    def direct():
        if any(a is not None for a in axes[:4]):
            slow = jax.vmap(_direct_terms, in_axes=axes[:4])(*args[:4])
        else:  # only the fast-path values vary over the batch
            slow = tuple(whole_batch(x, False) for x in _direct_terms(*args[:4]))
        return tuple(jnp.where(pick, s, f) for s, f in zip(slow, fast))

    return lax.cond(jnp.any(cancels), direct, lambda: fast), (True, True)


@jax.custom_jvp
def _unless_cancelling(cancels, v, valid, weights, scale, hat_dot, hat_sq):
    """`_direct_unless_fast` with the batching rule above; derivatives are the plain
    `cond`'s (a `custom_vmap` alone has no reverse mode)."""
    return _batched_direct_unless_fast(cancels, v, valid, weights, scale, hat_dot, hat_sq)


@functools.partial(_unless_cancelling.defjvp, symbolic_zeros=True)
def _unless_cancelling_jvp(primals, tangents):
    """Only the differentiated arguments go through `jax.jvp`; the others are closed over.
    Their zero tangents, instantiated, would reach `_direct_terms`' optimization barrier as
    non-linear values, which jax 0.11.2's transpose of the barrier cannot take (an
    `AttributeError` on `.accum`); they would also be computed for nothing."""
    moving = [i for i, d in enumerate(tangents) if not isinstance(d, SymbolicZero)]

    def along(*args):
        full = list(primals)
        for i, arg in zip(moving, args):
            full[i] = arg
        return _direct_unless_fast(*full)

    return jax.jvp(along, [primals[i] for i in moving], [tangents[i] for i in moving])


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


# ----------------------------------------------------------------------------- reference


def focal_reconstruction_reference(v, valid, temperature, *, scale=1.0):
    """Algorithm §3 written plainly (as `focal_reconstruction_xla`): one shifted copy of the video
    per neighbour, the softmax weights, `v_hat` formed explicitly, and `1 - cos(v, v_hat)`."""
    x = jnp.where(valid[..., None], load_f32(v, scale), 0.0)
    t, h, w, _ = x.shape
    pad = ((0, 0), (1, 1), (1, 1))
    xp, vp = jnp.pad(x, pad + ((0, 0),)), jnp.pad(valid, pad)
    norm = floored_norm(jnp.sum(x * x, axis=-1))
    nbs, oks, logits = [], [], []
    for dh, dw in NEIGHBOUR_OFFSETS:
        nb = xp[:, 1 + dh:1 + dh + h, 1 + dw:1 + dw + w]
        ok = vp[:, 1 + dh:1 + dh + h, 1 + dw:1 + dw + w]
        cos = jnp.sum(x * nb, axis=-1) / (norm * floored_norm(jnp.sum(nb * nb, axis=-1)))
        nbs.append(nb)
        oks.append(ok)
        logits.append(jnp.where(ok, cos / temperature, -jnp.inf))
    ok = jnp.stack(oks)
    count = jnp.sum(ok, axis=0, dtype=jnp.int32)
    logits = jnp.stack(logits)
    top = jnp.where(count > 0, jnp.max(logits, axis=0), 0.0)
    exps = jnp.where(ok, jnp.exp(logits - top), 0.0)
    weights = exps / jnp.maximum(jnp.sum(exps, axis=0), 1e-30)
    hat = sum(weights[j][..., None] * nbs[j] for j in range(len(nbs)))
    cos = jnp.sum(x * hat, axis=-1) / (norm * floored_norm(jnp.sum(hat * hat, axis=-1)))
    raw = jnp.where(valid & (count > 0), jnp.clip(1.0 - cos, 0.0, 2.0), 0.0)
    return raw, jnp.where(valid, count, 0)
