"""The LM's forward pass: `[prefix text, video slots, suffix text]` in, logits out.

`forward` takes video slots (features, validity) and the absolute M-RoPE positions of the
whole sequence (from `sequence_positions`, or `tfs_jax.serving.qwen_vl_rope_index`);
`prefill` takes a video's tokens and a pruning `Decision`, builds the slots and places them
by Qwen2-VL's rule. FastV, when asked for,
splits the layer stack: the last token's attention after layer `L - 1` picks the video
slots the remaining layers see (`tfs_jax.baselines.fastv_select`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Shaped

from tfs_jax.baselines import fastv_select
from tfs_jax.checks import check_tokens
from tfs_jax.checks import check_valid
from tfs_jax.decision import Decision
from tfs_jax.decision import gather_kept
from tfs_jax.vlm.config import FastVConfig
from tfs_jax.vlm.config import VLMConfig
from tfs_jax.models.decoder import run_layers
from tfs_jax.vlm.modules import Projector
from tfs_jax.vlm.modules import RMSNorm
from tfs_jax.vlm.rope import grid_positions
from tfs_jax.vlm.rope import sequence_positions

LOGITS_MODES = ("text", "last")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["logits", "hidden", "positions", "valid", "video_slots", "video_slot_valid",
                 "fastv_scores"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class VLMOutput:
    """What `forward` returns (`L'` = sequence length after FastV, `R` = video slots left).

    Attributes:
      logits: `(P + S, vocab)` logits of the text tokens (mode "text") or `(1, vocab)` of
        the last token (mode "last").
      hidden: `(L', d)` final normed hidden states of the sequence that reached the end.
      positions: `(L', 3)` int32 M-RoPE positions of those slots.
      valid: `(L',)` bool slot validity.
      video_slots: `(R,)` int32 input video slots still present after FastV (all `K` in
        order without FastV), padding `K`.
      video_slot_valid: `(R,)` bool.
      fastv_scores: `(K,)` float32 last-token head-averaged attention of layer `L - 1` on
        the video slots (zeros without FastV).
    """

    logits: Float[Array, "text vocab"]
    hidden: Float[Array, "l hidden"]
    positions: Int[Array, "l 3"]
    valid: Bool[Array, "l"]
    video_slots: Int[Array, "k_fastv"]
    video_slot_valid: Bool[Array, "k_fastv"]
    fastv_scores: Float[Array, "k"]


def _check_options(*, config, fastv, logits) -> None:
    """The static arguments of `forward`."""
    if not isinstance(config, VLMConfig):
        raise ValueError(f"config must be a VLMConfig, got {type(config).__name__}")
    if fastv is not None and not isinstance(fastv, FastVConfig):
        raise ValueError(f"fastv must be a FastVConfig or None, got {type(fastv).__name__}")
    if fastv is not None and fastv.layer > config.num_layers:
        raise ValueError(f"fastv.layer={fastv.layer} exceeds num_layers={config.num_layers}")
    if logits not in LOGITS_MODES:
        raise ValueError(f"logits={logits!r} must be one of {LOGITS_MODES}")


def _check_inputs(prefix_ids, video, video_valid, suffix_ids, *, vision_dim: int) -> None:
    """The array arguments of `forward` (shapes and dtypes only: tracers pass too)."""
    for name, ids in (("prefix_ids", prefix_ids), ("suffix_ids", suffix_ids)):
        if jnp.ndim(ids) != 1 or not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
            raise ValueError(f"{name} must be a 1-D integer array, got {jnp.shape(ids)}")
    if jnp.shape(suffix_ids)[0] < 1:
        raise ValueError("suffix_ids must hold at least one token (FastV ranks by the last)")
    shape = jnp.shape(video)
    if len(shape) != 2 or shape[1] != vision_dim or shape[0] < 1:
        raise ValueError(f"video must have shape (K >= 1, {vision_dim}), got {shape}")
    if not jnp.issubdtype(jnp.result_type(video), jnp.floating):
        raise ValueError(f"video must be floating point, got {jnp.result_type(video)}")
    check_valid(video_valid, (shape[0],))


def forward(
    params: dict,
    prefix_ids: Int[Array, "prefix"],
    video: Shaped[Array, "k d"],
    video_valid: Bool[Array, "k"],
    suffix_ids: Int[Array, "suffix"],
    positions: Int[Array, "l 3"],
    *,
    config: VLMConfig,
    fastv: FastVConfig | None = None,
    logits: str = "text",
) -> VLMOutput:
    """Prefill `[prefix text, video slots, suffix text]` through the LM.

    Args:
      params: from `init_params(config, key)`.
      prefix_ids, suffix_ids: `(P,)`, `(S,)` int token ids (S >= 1: the last token is text).
      video: `(K, vision_dim)` visual features (padding slots may hold anything, NaN too).
      video_valid: `(K,)` bool real slots.
      positions: `(P + K + S, 3)` absolute M-RoPE `(t, h, w)` positions of every slot
        (those of padding slots are ignored): `sequence_positions` places a video by
        Qwen2-VL's rule, `tfs_jax.serving.qwen_vl_rope_index` a serving stack's prompt.
      config: the LM sizes (static).
      fastv: optional FastV pruning inside the LM (static).
      logits: "text" (every text token) or "last" (the last token only: what a serving
        prefill computes).

    Bad shapes or options raise `ValueError` before tracing. The whole call is jitted with
    the keyword arguments static; any video of the same shapes reuses the compiled program.
    """
    _check_options(config=config, fastv=fastv, logits=logits)
    _check_inputs(prefix_ids, video, video_valid, suffix_ids, vision_dim=config.vision_dim)
    length = jnp.shape(prefix_ids)[0] + jnp.shape(video)[0] + jnp.shape(suffix_ids)[0]
    if jnp.shape(positions) != (length, 3) or not jnp.issubdtype(jnp.result_type(positions), jnp.integer):
        raise ValueError(f"positions must be integers of shape ({length}, 3), got "
                         f"{jnp.result_type(positions)} {jnp.shape(positions)}")
    return _forward(params, prefix_ids, video, video_valid, suffix_ids, positions,
                    config=config, fastv=fastv, logits=logits)


@functools.partial(jax.jit, static_argnames=("config", "fastv", "logits"))
def _forward(params, prefix_ids, video, video_valid, suffix_ids, positions, *,
             config, fastv, logits) -> VLMOutput:
    c = config
    p, k, s = prefix_ids.shape[0], video.shape[0], suffix_ids.shape[0]
    video_valid = jnp.asarray(video_valid).astype(bool)
    x, valid = _input_sequence(params, prefix_ids, video, video_valid, suffix_ids, config=c)
    positions = jnp.where(valid[:, None], jnp.asarray(positions, jnp.int32), p)  # padding: any finite position
    slots, slot_valid = jnp.arange(k, dtype=jnp.int32), video_valid
    scores = jnp.zeros((k,), jnp.float32)
    split = c.num_layers if fastv is None else fastv.layer
    first = jax.tree.map(lambda a: a[:split], params["layers"])
    x, last_rows = _run_layers(first, x, positions, valid, c)
    if fastv is not None:
        scores = last_rows[-1, p:p + k]
        chosen = fastv_select(scores, video_valid, retain_ratio=fastv.retain_ratio)
        slots, slot_valid = chosen.indices, chosen.slot_valid
        x, positions, valid = _keep_slots(x, positions, slots, slot_valid, prefix_len=p,
                                          suffix_len=s)
        rest = jax.tree.map(lambda a: a[split:], params["layers"])
        x, _ = _run_layers(rest, x, positions, valid, c)
    hidden = RMSNorm(c.rms_eps).apply({"params": params["final_norm"]}, x)
    text = hidden[-1:] if logits == "last" else jnp.concatenate([hidden[:p], hidden[-s:]])
    return VLMOutput(
        logits=text @ params["embed"].T,
        hidden=hidden,
        positions=positions,
        valid=valid,
        video_slots=slots,
        video_slot_valid=slot_valid,
        fastv_scores=scores,
    )


def _input_sequence(params, prefix_ids, video, video_valid, suffix_ids, *, config):
    """Embeddings `(L, d)` and validity `(L,)` of the input.

    Padding video slots are zeroed with `where` before and after the projector, so NaN
    garbage in them cannot reach a valid slot.
    """
    p, s = prefix_ids.shape[0], suffix_ids.shape[0]
    video = jnp.where(video_valid[:, None], jnp.asarray(video), 0).astype(jnp.float32)
    visual = Projector(config).apply({"params": params["projector"]}, video)
    visual = jnp.where(video_valid[:, None], visual, 0.0)
    x = jnp.concatenate([params["embed"][prefix_ids], visual, params["embed"][suffix_ids]])
    valid = jnp.concatenate([jnp.ones(p, bool), video_valid, jnp.ones(s, bool)])
    return x, valid


def _keep_slots(x, positions, slots, slot_valid, *, prefix_len, suffix_len):
    """The sequence FastV leaves: the text and the chosen video `slots` (their original
    positions), padding slots zeroed. Returns hidden states, positions and validity."""
    p, s = prefix_len, suffix_len
    k = x.shape[0] - p - s
    keep = jnp.concatenate([jnp.arange(p), p + jnp.minimum(slots, k - 1), jnp.arange(p + k, p + k + s)])
    valid = jnp.concatenate([jnp.ones(p, bool), slot_valid, jnp.ones(s, bool)])
    return jnp.where(valid[:, None], x[keep], 0.0), positions[keep], valid


def _run_layers(layers, x, positions, valid, config):
    """Apply a stack of layers of the one decoder; returns the hidden states and each
    layer's last-token attention row `(layers, L)`."""
    x, _, _, rows = run_layers(layers, x, positions, valid, config=config.decoder)
    return x, rows


def video_slots(
    tokens: Shaped[Array, "t h w d"],
    result: Decision | None = None,
    *,
    valid: Bool[Array, "t h w"] | None = None,
) -> tuple[Shaped[Array, "k d"], Int[Array, "k 3"], Bool[Array, "k"]]:
    """The video slots to feed `forward`: kept tokens, original positions, validity.

    With a `Decision` these are `gather_kept(tokens, result)` (K = the pruner's slots);
    without one, every token in flat order with `valid` (default all) as the mask.
    """
    t, h, w, d = tokens.shape
    if result is not None:
        return gather_kept(tokens, result)
    mask = jnp.ones((t * h * w,), bool) if valid is None else jnp.asarray(valid).astype(bool).reshape(-1)
    return jnp.asarray(tokens).reshape(-1, d), grid_positions((t, h, w)), mask


def prefill(
    params: dict,
    tokens: Shaped[Array, "t h w d"],
    prefix_ids: Int[Array, "prefix"],
    suffix_ids: Int[Array, "suffix"],
    *,
    config: VLMConfig,
    result: Decision | None = None,
    valid: Bool[Array, "t h w"] | None = None,
    fastv: FastVConfig | None = None,
    logits: str = "text",
) -> VLMOutput:
    """Prefill `[prefix, video, suffix]` with the video pruned by `result` (or unpruned).

    `result` comes from `tfs_prune` or any baseline on the same `tokens`; its padding slots
    are masked out. Without `result`, `valid` masks the full video. Positions are always the
    unpruned video's (package docstring). Bad shapes or options raise `ValueError` before
    tracing, as in `forward`.
    """
    check_tokens(tokens, valid)
    if result is not None and not isinstance(result, Decision):
        raise ValueError(f"result must be a Decision or None, got {type(result).__name__}")
    _check_options(config=config, fastv=fastv, logits=logits)
    slots, grid_coords, slot_valid = video_slots(tokens, result, valid=valid)
    _check_inputs(prefix_ids, slots, slot_valid, suffix_ids, vision_dim=config.vision_dim)
    # `sequence_positions` gives integer positions of shape (P + K + S, 3): `forward`'s
    # positions check holds by construction, so call the jitted body directly.
    positions = sequence_positions(grid_coords, prefix_len=jnp.shape(prefix_ids)[0],
                                   suffix_len=jnp.shape(suffix_ids)[0], grid=tuple(tokens.shape[:3]),
                                   temporal_stride=config.temporal_stride)
    return _forward(params, prefix_ids, slots, slot_valid, suffix_ids, positions,
                    config=config, fastv=fastv, logits=logits)
