"""Baseline selectors with `tfs_prune`'s call shape, and FastV's selector, all returning
`tfs_jax.Decision`.

The video baselines are one table of named keep-mask rules (`RULES`) behind one wrapper:

    decision = tfs_jax.baselines.prune("divprune", tokens, 0.25, valid=valid, key=key)
    decision = tfs_jax.baselines.divprune(tokens, 0.25)      # the same, by name

Each keeps exactly `K_v = budget(N_v)` valid tokens in `K = static_budget(T*H*W,
retain_ratio)` slots (algorithm §7), so all methods compare at equal budgets. Padding is never
kept and what it holds (NaN included) never leaks: tokens go through `prepare_tokens`
(float32, padding and non-finite tokens zeroed and masked) and every reduction masks with
`where`. A baseline returns a plain `Decision`: it computes no saliency, motion or segments,
so it reports none.

`retain_ratio` sets the output shape, so it is static:

    prune = jax.jit(tfs_jax.baselines.prune, static_argnames=("method", "retain_ratio"))
    batch = jax.vmap(lambda v, m: tfs_jax.baselines.evs(v, 0.25, valid=m))(videos, masks)

`key` is used by `random` only; the others accept and ignore it (same signature).

Rules:
  uniform   spatio-temporal stride: `K_v` tokens spread evenly over the valid tokens in
            flat `(t, h, w)` order by cumulative rounding (deterministic).
  random    `K_v` valid tokens uniformly without replacement, from `key`.
  evs       Efficient Video Sampling (Bagrov et al., 2025; vLLM `multimodal/evs.py`): drop
            the tokens most similar (cosine) to the same position in the previous frame.
  divprune  DivPrune (Alvar et al., CVPR 2025): greedy max-min diversity on cosine distance.
  vidcom2   VidCom2 (Liu et al., EMNLP 2025): frame budgets from frame uniqueness, tokens
            from token uniqueness.

FastV (Chen et al., 2024) chooses among an LM's video slots by attention, not among tokens:
`fastv_select(scores, valid, retain_ratio=...)` returns a `Decision` over the slots, which
`tfs_jax.vlm` applies inside the LM.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Shaped

from tfs_jax.budget import static_budget
from tfs_jax.budget import video_budget
from tfs_jax.checks import check_key
from tfs_jax.checks import check_retain_ratio
from tfs_jax.checks import check_tokens
from tfs_jax.decision import Decision
from tfs_jax.decision import decide
from tfs_jax.primitives import safe_norm
from tfs_jax.primitives import share
from tfs_jax.tokens import as_typed_key
from tfs_jax.tokens import prepare_numpy_float64
from tfs_jax.tokens import prepare_tokens

# EVS: tokens with no valid predecessor rank above every cosine distance (which is <= 2).
EVS_NEW_TOKEN = 3.0
# VidCom2's Gaussian bandwidths 2**-3 .. 2**1 and frame-softmax temperature.
VIDCOM2_ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)
VIDCOM2_TEMPERATURE = 0.01


# ----------------------------------------------------------------------------------------
# Shared pieces.


def keep_top(priority: Float[Array, "n"], valid: Bool[Array, "n"], k_v) -> Bool[Array, "n"]:
    """Mask of the `k_v` valid entries with the largest priority; ties to the lower index.

    Valid priorities must be finite; `k_v <= sum(valid)` then keeps only valid entries.

    >>> keep_top(jnp.array([.2, .9, .9, 5.]), jnp.array([1, 1, 1, 0], bool), 2)
    Array([False,  True,  True, False], dtype=bool)
    """
    n = priority.shape[0]
    order = jnp.argsort(jnp.where(valid, -priority, jnp.inf), stable=True)
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return valid & (rank < k_v)


def _unit(v: Float[Array, "... d"]) -> Float[Array, "... d"]:
    """Rows scaled to unit norm, so that `unit(a) . unit(b)` is algorithm §0's cosine."""
    return v / safe_norm(v)[..., None]


# ----------------------------------------------------------------------------------------
# Rules. Each returns the keep mask for prepared tokens `v` (T, H, W, D) and budget k_v.


def _uniform(v, valid, key, k_v):
    """Uniform spatio-temporal stride.

    With `r` the token's rank among the valid tokens in flat order, the first `c` valid
    tokens hold `round_half_up(c * K_v / N_v)` kept ones (algorithm §0 `share`): token `r` is
    kept when that count steps up at `c = r + 1`. At 25% that keeps ranks 1, 5, 9, ...
    """
    flat = valid.reshape(-1)
    n_v = jnp.sum(flat, dtype=jnp.int32)
    rank = jnp.cumsum(flat, dtype=jnp.int32) - 1
    steps = share(k_v, rank + 1, n_v) - share(k_v, rank, n_v)
    return (flat & (steps > 0)).reshape(valid.shape)


def _random(v, valid, key, k_v):
    """`K_v` valid tokens uniformly at random without replacement: the largest of i.i.d.
    `uniform(key, (T*H*W,))` priorities among the valid tokens."""
    priority = jax.random.uniform(key, (valid.size,))
    return keep_top(priority, valid.reshape(-1), k_v).reshape(valid.shape)


def _evs(v, valid, key, k_v):
    """EVS: rank by `1 - cos(v[t, h, w], v[t-1, h, w])`, most dissimilar first.

    A token whose previous-frame token does not exist or is padding counts as new and
    ranks first (vLLM gives the first frame 255); ties go to the lower flat index. EVS in
    vLLM keeps at least a whole frame; here the budget is exactly `K_v`, so when `K_v` is
    below the new tokens' count only the first `K_v` of them (raster order) are kept.
    """
    u = _unit(v)
    dist = jnp.clip(1.0 - jnp.sum(u[1:] * u[:-1], axis=-1), 0.0, 2.0)
    has_prev = valid[1:] & valid[:-1]
    dist = jnp.where(has_prev, dist, EVS_NEW_TOKEN)
    priority = jnp.concatenate([jnp.full_like(dist[:1], EVS_NEW_TOKEN), dist], axis=0)
    return keep_top(priority.reshape(-1), valid.reshape(-1), k_v).reshape(valid.shape)


def _divprune(v, valid, key, k_v):
    """DivPrune: greedy max-min diversity on cosine distance `clip(1 - cos, 0, 2)`.

    Start from the valid token farthest from the mean direction of the valid tokens (ties:
    lowest index); then repeatedly add the unselected valid token whose minimum distance to
    the selected set is largest (ties: lowest index). A running `(N,)` min-distance vector
    makes each step one `(N, D) @ (D,)` product: O(N D) work and O(N) extra memory.

    Simplification: DivPrune's reference code starts from the token whose nearest
    neighbour is farthest, which needs all `N^2` distances; the mean-direction start is
    O(N D). From the second token on, the greedy rule is DivPrune's.
    """
    flat = valid.reshape(-1)
    u = _unit(v.reshape(-1, v.shape[-1]))
    center = _unit(jnp.sum(jnp.where(flat[:, None], u, 0.0), axis=0))
    first = jnp.argmax(jnp.where(flat, jnp.clip(1.0 - u @ center, 0.0, 2.0), -1.0))

    def add(j, keep, min_dist):
        keep = keep.at[j].set(True)
        return keep, jnp.minimum(min_dist, jnp.clip(1.0 - u @ u[j], 0.0, 2.0))

    def step(_, carry):
        keep, min_dist = carry
        return add(jnp.argmax(jnp.where(keep | ~flat, -1.0, min_dist)), keep, min_dist)

    keep, min_dist = add(first, jnp.zeros_like(flat), jnp.full(flat.shape, jnp.inf))
    keep, _ = jax.lax.fori_loop(1, k_v, step, (keep & (k_v > 0), min_dist))
    return keep.reshape(valid.shape)


def _vidcom2(v, valid, key, k_v):
    """VidCom2: frame budgets from frame uniqueness, tokens from token uniqueness.

    Following the authors' `vidcom2_compression` (xuyang-liu16/VidCom2):
    1. keep the half of the channels with the lowest variance over the valid tokens, and
       L2-normalise the tokens on them;
    2. a token's similarity to a centre `c` is `sum_a exp(-|x - c|^2 / (2 a))` over
       `a in 2**-3 .. 2**1`; `s_vid` to the mean of the video, `s_frame` to its frame's mean;
    3. frame uniqueness `-mean(s_vid)` over the frame, softmax over the valid frames at
       temperature 0.01, gives the frame weight `w_t = 1 + p_t - mean(p)`;
    4. within a frame, tokens are taken by ascending `s_vid + s_frame` (least similar first).

    Change for an exact budget: VidCom2 keeps `round(base * w_t * tokens_per_frame)` per
    frame, whose sum drifts from the budget. Here frame `t` (with `n_t` valid tokens) gets
    seats in proportion to `w_t * n_t` by Sainte-Lague: its `r`-th token (0-based) has the
    quotient `(r + 0.5) / (w_t * n_t)` and the `K_v` smallest quotients are kept, so a frame
    gets `round(theta * w_t * n_t)` tokens (never above `n_t`) and the total is exactly `K_v`.
    """
    t, h, w, d = v.shape
    flat = valid.reshape(t, h * w)
    x = v.reshape(t, h * w, d)
    x = _unit(_low_variance_channels(x, flat))
    count = jnp.maximum(jnp.sum(flat, axis=1, keepdims=True), 1)
    frame_center = jnp.sum(jnp.where(flat[..., None], x, 0.0), axis=1, keepdims=True) / count[..., None]
    video_center = jnp.sum(jnp.where(flat[..., None], x, 0.0), axis=(0, 1)) / jnp.maximum(jnp.sum(flat), 1)
    s_vid, s_frame = _gaussian_similarity(x, video_center), _gaussian_similarity(x, frame_center)
    weight = _frame_weights(-jnp.sum(jnp.where(flat, s_vid, 0.0), axis=1) / count[:, 0], jnp.any(flat, axis=1))
    order = jnp.argsort(jnp.where(flat, s_vid + s_frame, jnp.inf), axis=1, stable=True)
    rank = jnp.zeros_like(order).at[jnp.arange(t)[:, None], order].set(jnp.arange(h * w)[None, :])
    quotient = (rank + 0.5) / (weight[:, None] * count)
    return keep_top(-quotient.reshape(-1), valid.reshape(-1), k_v).reshape(valid.shape)


def _low_variance_channels(x: Float[Array, "t p d"], valid: Bool[Array, "t p"]) -> Float[Array, "t p d_low"]:
    """The `max(1, D // 2)` channels with the lowest variance over the valid tokens."""
    n = jnp.maximum(jnp.sum(valid), 1)
    mean = jnp.sum(jnp.where(valid[..., None], x, 0.0), axis=(0, 1)) / n
    var = jnp.sum(jnp.where(valid[..., None], (x - mean) ** 2, 0.0), axis=(0, 1)) / n
    _, channels = jax.lax.top_k(-var, max(1, x.shape[-1] // 2))
    return x[..., jnp.sort(channels)]


def _gaussian_similarity(x: Float[Array, "t p d_low"], center: Float[Array, "... d_low"]) -> Float[Array, "t p"]:
    dist2 = jnp.sum((x - center) ** 2, axis=-1)
    return sum(jnp.exp(-dist2 / (2.0 * a)) for a in VIDCOM2_ALPHAS)


def _frame_weights(score: Float[Array, "t"], frame_valid: Bool[Array, "t"]) -> Float[Array, "t"]:
    """`1 + p_t - mean(p)`, `p` the softmax of `score / 0.01` over the valid frames (> 0)."""
    logits = jnp.where(frame_valid, score / VIDCOM2_TEMPERATURE, -jnp.inf)
    shift = jnp.max(logits)
    e = jnp.where(frame_valid, jnp.exp(logits - jnp.where(jnp.isfinite(shift), shift, 0.0)), 0.0)
    p = e / jnp.maximum(jnp.sum(e), jnp.finfo(jnp.float32).tiny)
    mean = jnp.sum(p) / jnp.maximum(jnp.sum(frame_valid), 1)
    return jnp.where(frame_valid, 1.0 + p - mean, 1.0)



# ----------------------------------------------------------------------------------------
# The table and its one wrapper.

Rule = Callable[..., Bool[Array, "t h w"]]
RULES: dict[str, Rule] = {
    "uniform": _uniform,
    "random": _random,
    "evs": _evs,
    "divprune": _divprune,
    "vidcom2": _vidcom2,
}


def prune(
    method: str,
    tokens: Shaped[Array, "t h w d"],
    retain_ratio: float,
    *,
    valid: Bool[Array, "t h w"] | None = None,
    key: Array | None = None,
) -> Decision:
    """Keep `K_v` tokens of a video by the rule `RULES[method]`.

    Args:
      method: a name of `RULES` (static).
      tokens: `(T, H, W, D)` float tokens.
      retain_ratio: in (0, 1], static under `jax.jit` (it sets `K`).
      valid: `(T, H, W)` bool mask (default all).
      key: PRNG key of `random` (default `jax.random.key(0)`); the others ignore it.

    Returns:
      A `Decision` with `K = static_budget(T*H*W, retain_ratio)` slots, `K_v` of them real.
    """
    if method not in RULES:
        raise ValueError(f"method={method!r} must be one of {tuple(RULES)}")
    retain_ratio = check_retain_ratio(retain_ratio)
    check_tokens(tokens, valid)
    check_key(key)
    if isinstance(tokens, np.ndarray):
        tokens, valid = prepare_numpy_float64(tokens, valid)
    key = as_typed_key(key)  # key(0) for None; a legacy key wrapped, so both share one trace
    return _run(tokens, valid, key, method=method, retain_ratio=retain_ratio)


@functools.partial(jax.jit, static_argnames=("method", "retain_ratio"))
def _run(tokens, valid, key, *, method, retain_ratio) -> Decision:
    v, valid = prepare_tokens(tokens, valid)
    k_v = video_budget(jnp.sum(valid, dtype=jnp.int32), retain_ratio)
    return decide(RULES[method](v, valid, key, k_v) & valid, retain_ratio)


def _by_name(method: str) -> Callable[..., Decision]:
    def named(tokens, retain_ratio, *, valid=None, key=None) -> Decision:
        return prune(method, tokens, retain_ratio, valid=valid, key=key)

    named.__name__ = named.__qualname__ = method
    named.__doc__ = f"`prune({method!r}, tokens, retain_ratio, *, valid, key)`: " + (
        RULES[method].__doc__ or ""
    )
    return named


uniform = _by_name("uniform")
random = _by_name("random")
evs = _by_name("evs")
divprune = _by_name("divprune")
vidcom2 = _by_name("vidcom2")


# ----------------------------------------------------------------------------------------
# FastV: a selector over an LM's video slots.


def fastv_select(
    scores: Float[Array, "k"], valid: Bool[Array, "k"], *, retain_ratio: float
) -> Decision:
    """FastV's decision: the valid slots with the largest attention (ties to the lower slot).

    Args:
      scores: `(K_in,)` attention the last token pays to each video slot.
      valid: `(K_in,)` real slots.
      retain_ratio: static; `R = static_budget(K_in, retain_ratio)` output slots, of which
        `video_budget(sum(valid), retain_ratio)` are real (algorithm §7 budgets).

    Returns:
      A `Decision` over the `K_in` slots: `keep_mask` `(K_in,)`, `indices` `(R,)`.

    >>> d = fastv_select(jnp.array([.1, .5, .3, .9, .2]), jnp.array([1, 1, 1, 0, 1], bool),
    ...                  retain_ratio=0.4)
    >>> d.indices, d.slot_valid
    (Array([1, 2], dtype=int32), Array([ True,  True], dtype=bool))
    """
    k = scores.shape[0]
    r = static_budget(k, retain_ratio)
    r_v = video_budget(jnp.sum(valid, dtype=jnp.int32), retain_ratio)
    ranked = jnp.where(valid, scores.astype(jnp.float32), -jnp.inf)
    _, top = jax.lax.top_k(ranked, r)
    keep = jnp.zeros((k,), bool).at[top].set(jnp.arange(r) < r_v)
    return decide(keep, retain_ratio)
