"""A Qwen2-style video LM to run pruned video tokens through (the VLM adapter).

A random-initialised decoder-only LM in the Qwen2 / Qwen2-VL style: RMSNorm, SwiGLU MLP,
grouped-query attention with q/k/v biases, and multimodal RoPE (M-RoPE): the rotary
frequency bands are split into temporal, height and width sections, each rotated by that
coordinate of the token's `(t, h, w)` position (Qwen2-VL, `mrope_section`). Visual features
enter through a projector (linear or 2-layer GELU MLP) from the encoder dimension.

Sequence layout (one sequence; `jax.vmap` for a batch):

    [prefix text: P tokens] [video: K slots] [suffix text: S tokens]

Positions follow Qwen2-VL's `get_rope_index` on the *unpruned* sequence, indexed by the kept
tokens (as the VidCom2 / FastVID Qwen ports and vLLM's EVS do): prefix token `p` sits at
`(p, p, p)`; a video token keeps its original `(P + t * temporal_stride, P + h, P + w)`
whether or not its neighbours were pruned; the suffix continues from the full grid,
`P + max((T - 1) * temporal_stride, H - 1, W - 1) + 1` onwards, so pruning never moves text.

The K video slots have a validity mask: a padding slot takes part in nothing. Its input is
zeroed (`where`, so NaN garbage cannot leak), it attends only to itself and nothing attends
to it; everything else is causal. So one compiled program serves every video of one shape.

FastV (Chen et al., 2024) runs inside the LM: layers `[0, L)` see every slot; the last
token's head-averaged attention in layer `L - 1` ranks the valid video slots and layers
`[L, n)` run on the prefix, the top `R` video slots (time order, original positions) and the
suffix. The cascade of the paper's Table 3 is `tfs_prune` at 50% then FastV at 50%:

    result = tfs_jax.tfs_prune(tokens, tfs_jax.TFSConfig(retain_ratio=0.5))
    out = prefill(params, tokens, prefix_ids, suffix_ids, config=cfg, result=result,
                  fastv=FastVConfig(layer=2, retain_ratio=0.5))
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from tfs_jax.baselines import fastv_select
from tfs_jax.checks import check_retain_ratio
from tfs_jax.checks import check_tokens
from tfs_jax.checks import check_valid
from tfs_jax.decision import Decision
from tfs_jax.decision import gather_kept

LOGITS_MODES = ("text", "last")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    """Sizes of the LM (static: hashable, passed to `jax.jit` as a static argument).

    Attributes:
      vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size:
        the Qwen2 decoder sizes (`num_heads` a multiple of `num_kv_heads`).
      vision_dim: feature dimension of the video tokens fed to the projector.
      projector: "mlp" (Linear, GELU, Linear, as Qwen2-VL's merger) or "linear".
      rope_theta: RoPE base.
      mrope_section: frequency bands given to (t, h, w); sums to `head_dim // 2`.
      temporal_stride: position step between frames (Qwen2.5-VL: tokens per second times
        seconds per temporal patch; Qwen2-VL: 1).
      rms_eps: RMSNorm epsilon.
    """

    vocab_size: int = 151_936
    hidden_size: int = 896
    num_layers: int = 24
    num_heads: int = 14
    num_kv_heads: int = 2
    intermediate_size: int = 4864
    vision_dim: int = 1536
    projector: str = "mlp"
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (8, 12, 12)
    temporal_stride: int = 1
    rms_eps: float = 1e-6

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                     "intermediate_size", "vision_dim", "temporal_stride"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}, "
                f"itself a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        section = tuple(self.mrope_section)
        if len(section) != 3 or not all(_is_int(s) and s >= 0 for s in section):
            raise ValueError(f"mrope_section={self.mrope_section!r} must be three integers >= 0")
        if sum(section) != self.head_dim // 2:
            raise ValueError(f"mrope_section={section} must sum to head_dim // 2 = {self.head_dim // 2}")
        object.__setattr__(self, "mrope_section", section)
        if self.projector not in ("mlp", "linear"):
            raise ValueError(f"projector={self.projector!r} must be 'mlp' or 'linear'")
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
            raise ValueError(f"rope_theta={self.rope_theta!r} must be a finite number > 1")
        if not (math.isfinite(self.rms_eps) and self.rms_eps > 0):
            raise ValueError(f"rms_eps={self.rms_eps!r} must be a finite number > 0")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def tiny(cls, **changes) -> VLMConfig:
        """A 2-layer toy for tests: hidden 64, 4 heads of 16, 2 KV heads, vision dim 16."""
        sizes = dict(vocab_size=97, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                     intermediate_size=128, vision_dim=16, mrope_section=(2, 3, 3),
                     rope_theta=10_000.0)
        return cls(**{**sizes, **changes})

    @classmethod
    def qwen2_0_5b(cls, **changes) -> VLMConfig:
        """Qwen2-0.5B shapes (hidden 896, 24 layers, 14 heads, 2 KV heads, SwiGLU 4864),
        M-RoPE sections (8, 12, 12) (Qwen2-VL's (16, 24, 24) scaled to head_dim 64)."""
        return cls(**changes)


@dataclasses.dataclass(frozen=True)
class FastVConfig:
    """FastV inside the LM (static): prune video slots after `layer` layers.

    Attributes:
      layer: L >= 1; layer L-1's last-token attention ranks the video slots, layers >= L see
        only the kept ones (FastV's K; its paper uses 2).
      retain_ratio: share of video slots kept, `R = static_budget(K, retain_ratio)` slots of
        which `video_budget(valid slots, retain_ratio)` are real (SPEC 7 budgets).
    """

    layer: int = 2
    retain_ratio: float = 0.5

    def __post_init__(self):
        if not _is_int(self.layer) or self.layer < 1:
            raise ValueError(f"layer={self.layer!r} must be an integer >= 1")
        check_retain_ratio(self.retain_ratio)


# ----------------------------------------------------------------------------------------
# Positions, masks, rotary embedding.


def sequence_positions(
    video_positions: Int[Array, "k 3"],
    *,
    prefix_len: int,
    suffix_len: int,
    grid: tuple[int, int, int],
    temporal_stride: int = 1,
) -> Int[Array, "l 3"]:
    """M-RoPE `(t, h, w)` positions of `[prefix, video slots, suffix]` (Qwen2-VL rope index).

    Args:
      video_positions: `(K, 3)` original `(t, h, w)` grid coordinates of the video slots
        (padding slots may hold anything: they are never attended).
      prefix_len, suffix_len: P and S text tokens.
      grid: the unpruned video grid `(T, H, W)`: the suffix starts after its largest position.
      temporal_stride: position step between frames.

    Returns:
      `(P + K + S, 3)` int32 positions. Text tokens have equal components.

    Example: one video slot at `(0, 1, 1)` of a `(2, 2, 3)` grid, `P = 2`, `S = 1` gives
    `[[0, 0, 0], [1, 1, 1], [2, 3, 3], [5, 5, 5]]`: the suffix starts at `2 + max(1, 1, 2) + 1`.
    """
    t, h, w = grid
    scale = jnp.array([temporal_stride, 1, 1], jnp.int32)
    video = prefix_len + jnp.asarray(video_positions, jnp.int32) * scale
    suffix_start = prefix_len + max((t - 1) * temporal_stride, h - 1, w - 1) + 1
    prefix = jnp.broadcast_to(jnp.arange(prefix_len, dtype=jnp.int32)[:, None], (prefix_len, 3))
    suffix = suffix_start + jnp.arange(suffix_len, dtype=jnp.int32)
    suffix = jnp.broadcast_to(suffix[:, None], (suffix_len, 3))
    return jnp.concatenate([prefix, video, suffix], axis=0)


def grid_positions(grid: tuple[int, int, int]) -> Int[Array, "n 3"]:
    """`(t, h, w)` of every token of a `(T, H, W)` grid in flat order `(t * H + h) * W + w`."""
    t, h, w = np.meshgrid(*(np.arange(g) for g in grid), indexing="ij")
    return jnp.asarray(np.stack([t, h, w], axis=-1).reshape(-1, 3), jnp.int32)


def attention_mask(valid: Bool[Array, "l"]) -> Bool[Array, "l l"]:
    """`mask[q, k]`: query slot q may attend key slot k.

    Causal among valid slots; a padding slot attends only to itself (so its row of the
    softmax is finite) and no other slot attends to it.
    """
    idx = jnp.arange(valid.shape[0])
    causal = idx[None, :] <= idx[:, None]
    return (causal & valid[:, None] & valid[None, :]) | (idx[:, None] == idx[None, :])


def mrope_cos_sin(
    positions: Int[Array, "l 3"], *, head_dim: int, theta: float, section: tuple[int, int, int]
) -> tuple[Float[Array, "l e"], Float[Array, "l e"]]:
    """Cosines and sines of M-RoPE, `e = head_dim` (rotate-half layout).

    Frequency band `i` (of `head_dim // 2`, ascending period) is rotated by the time,
    height or width coordinate: the first `section[0]` bands by t, the next `section[1]`
    by h, the last `section[2]` by w (Qwen2-VL `apply_multimodal_rotary_pos_emb`).
    """
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    axis_of_band = np.repeat(np.arange(3), section)
    pos = jnp.asarray(positions, jnp.float32)[:, axis_of_band]
    angles = pos * jnp.asarray(inv_freq, jnp.float32)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: Float[Array, "l ... e"], cos: Float[Array, "l e"], sin: Float[Array, "l e"]):
    """`x * cos + rotate_half(x) * sin` on the last axis, broadcast over head axes."""
    extra = (None,) * (x.ndim - 2)
    cos, sin = cos[(slice(None), *extra)], sin[(slice(None), *extra)]
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


# ----------------------------------------------------------------------------------------
# Modules.

_init = nn.initializers.normal(stddev=0.02)


class RMSNorm(nn.Module):
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x = x.astype(jnp.float32)
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * scale


class Attention(nn.Module):
    """Grouped-query causal self-attention with M-RoPE and a slot-validity mask."""

    config: VLMConfig

    @nn.compact
    def __call__(self, x, cos, sin, valid) -> tuple[Float[Array, "l d"], Float[Array, "l"]]:
        """Returns the attention output and the last slot's head-averaged attention row."""
        c = self.config
        length, hd, groups = x.shape[0], c.head_dim, c.num_heads // c.num_kv_heads
        dense = functools.partial(nn.Dense, kernel_init=_init)
        q = dense(c.num_heads * hd, name="q_proj")(x).reshape(length, c.num_kv_heads, groups, hd)
        k = dense(c.num_kv_heads * hd, name="k_proj")(x).reshape(length, c.num_kv_heads, hd)
        v = dense(c.num_kv_heads * hd, name="v_proj")(x).reshape(length, c.num_kv_heads, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        scores = jnp.einsum("qhgd,khd->hgqk", q, k) / math.sqrt(hd)
        scores = jnp.where(attention_mask(valid), scores, -jnp.inf)
        probs = jax.nn.softmax(scores, axis=-1)
        out = jnp.einsum("hgqk,khd->qhgd", probs, v).reshape(length, c.num_heads * hd)
        out = dense(c.hidden_size, use_bias=False, name="o_proj")(out)
        return out, jnp.mean(probs[:, :, -1, :], axis=(0, 1))


class DecoderLayer(nn.Module):
    """Pre-norm attention and SwiGLU MLP blocks with residuals (Qwen2)."""

    config: VLMConfig

    @nn.compact
    def __call__(self, x, cos, sin, valid) -> tuple[Float[Array, "l d"], Float[Array, "l"]]:
        c = self.config
        attn, last_row = Attention(c, name="self_attn")(RMSNorm(c.rms_eps, name="input_norm")(x),
                                                        cos, sin, valid)
        x = x + attn
        h = RMSNorm(c.rms_eps, name="post_attention_norm")(x)
        dense = functools.partial(nn.Dense, use_bias=False, kernel_init=_init)
        gate = dense(c.intermediate_size, name="gate_proj")(h)
        up = dense(c.intermediate_size, name="up_proj")(h)
        return x + dense(c.hidden_size, name="down_proj")(jax.nn.silu(gate) * up), last_row


class Projector(nn.Module):
    """Visual features to the LM width: Linear, or Linear-GELU-Linear (Qwen2-VL merger)."""

    config: VLMConfig

    @nn.compact
    def __call__(self, x: Float[Array, "k v"]) -> Float[Array, "k d"]:
        c = self.config
        if c.projector == "mlp":
            x = jax.nn.gelu(nn.Dense(c.hidden_size, kernel_init=_init, name="fc1")(x))
            return nn.Dense(c.hidden_size, kernel_init=_init, name="fc2")(x)
        return nn.Dense(c.hidden_size, kernel_init=_init, name="linear")(x)


def param_shapes(config: VLMConfig) -> dict:
    """The parameter pytree's shapes (`jax.ShapeDtypeStruct` leaves), traced abstractly.

    Keys: "embed" `(vocab, d)` (also the tied LM head), "projector", "layers" (every layer
    stacked on a leading axis of length `num_layers`, so layers run under `lax.scan` and
    FastV splits the stack at its layer), "final_norm".
    """
    c = config
    one = jnp.zeros((1, c.hidden_size), jnp.float32)
    cos, sin = jnp.ones((1, c.head_dim)), jnp.zeros((1, c.head_dim))
    layer = lambda k: DecoderLayer(c).init(k, one, cos, sin, jnp.ones((1,), bool))["params"]

    def build(key):
        return {
            "embed": jnp.zeros((c.vocab_size, c.hidden_size), jnp.float32),
            "projector": Projector(c).init(key, jnp.zeros((1, c.vision_dim)))["params"],
            "layers": jax.vmap(layer)(jax.random.split(key, c.num_layers)),
            "final_norm": RMSNorm(c.rms_eps).init(key, one)["params"],
        }

    return jax.eval_shape(build, jax.random.key(0))


@functools.partial(jax.jit, static_argnames="config")
def init_params(config: VLMConfig, key: Array) -> dict:
    """Random parameters: weight matrices N(0, 0.02^2), biases 0, norm scales 1.

    All matrices are slices of one `normal(key, (total,))` draw: one PRNG call keeps the
    compile short (a threefry call per matrix costs seconds of XLA time on CPU).
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(param_shapes(config))
    kinds = [path[-1].key if path[-1].key in ("scale", "bias") else "weight" for path, _ in flat]
    sizes = [shape.size if kind == "weight" else 0 for kind, (_, shape) in zip(kinds, flat)]
    noise = 0.02 * jax.random.normal(key, (sum(sizes),), jnp.float32)
    starts = np.cumsum([0] + sizes[:-1])
    leaves = [
        noise[start:start + size].reshape(shape.shape) if kind == "weight"
        else jnp.full(shape.shape, 1.0 if kind == "scale" else 0.0, jnp.float32)
        for kind, size, start, (_, shape) in zip(kinds, sizes, starts, flat)
    ]
    return jax.tree.unflatten(treedef, leaves)


# ----------------------------------------------------------------------------------------
# Forward pass.


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

    logits: Float[Array, "m v"]
    hidden: Float[Array, "l d"]
    positions: Int[Array, "l 3"]
    valid: Bool[Array, "l"]
    video_slots: Int[Array, "r"]
    video_slot_valid: Bool[Array, "r"]
    fastv_scores: Float[Array, "k"]


def forward(
    params: dict,
    prefix_ids: Int[Array, "p"],
    video: Shaped[Array, "k v"],
    video_positions: Int[Array, "k 3"],
    video_valid: Bool[Array, "k"],
    suffix_ids: Int[Array, "s"],
    *,
    config: VLMConfig,
    grid: tuple[int, int, int],
    fastv: FastVConfig | None = None,
    logits: str = "text",
) -> VLMOutput:
    """Prefill `[prefix text, video slots, suffix text]` through the LM.

    Args:
      params: from `init_params(config, key)`.
      prefix_ids, suffix_ids: `(P,)`, `(S,)` int token ids (S >= 1: the last token is text).
      video: `(K, vision_dim)` visual features (padding slots may hold anything, NaN too).
      video_positions: `(K, 3)` original `(t, h, w)` of each slot.
      video_valid: `(K,)` bool real slots.
      config: the LM sizes (static).
      grid: the unpruned video grid `(T, H, W)` (static): fixes the suffix positions.
      fastv: optional FastV pruning inside the LM (static).
      logits: "text" (every text token) or "last" (the last token only: what a serving
        prefill computes).

    Bad shapes or options raise `ValueError` before tracing. The whole call is jitted with
    the keyword arguments static; any video of the same shapes reuses the compiled program.
    """
    _check_forward(prefix_ids, video, video_positions, video_valid, suffix_ids,
                   config=config, grid=grid, fastv=fastv, logits=logits)
    grid = tuple(int(g) for g in grid)
    return _forward(params, prefix_ids, video, video_positions, video_valid, suffix_ids,
                    config=config, grid=grid, fastv=fastv, logits=logits)


def _check_forward(prefix_ids, video, video_positions, video_valid, suffix_ids, *,
                   config, grid, fastv, logits) -> None:
    if not isinstance(config, VLMConfig):
        raise ValueError(f"config must be a VLMConfig, got {type(config).__name__}")
    if fastv is not None and not isinstance(fastv, FastVConfig):
        raise ValueError(f"fastv must be a FastVConfig or None, got {type(fastv).__name__}")
    if fastv is not None and fastv.layer > config.num_layers:
        raise ValueError(f"fastv.layer={fastv.layer} exceeds num_layers={config.num_layers}")
    if logits not in LOGITS_MODES:
        raise ValueError(f"logits={logits!r} must be one of {LOGITS_MODES}")
    if len(grid) != 3 or not all(_is_int(g) and g >= 1 for g in grid):
        raise ValueError(f"grid={grid!r} must be three integers >= 1 (T, H, W)")
    for name, ids in (("prefix_ids", prefix_ids), ("suffix_ids", suffix_ids)):
        if jnp.ndim(ids) != 1 or not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
            raise ValueError(f"{name} must be a 1-D integer array, got {jnp.shape(ids)}")
    if jnp.shape(suffix_ids)[0] < 1:
        raise ValueError("suffix_ids must hold at least one token (FastV ranks by the last)")
    shape = jnp.shape(video)
    if len(shape) != 2 or shape[1] != config.vision_dim or shape[0] < 1:
        raise ValueError(f"video must have shape (K >= 1, {config.vision_dim}), got {shape}")
    if not jnp.issubdtype(jnp.result_type(video), jnp.floating):
        raise ValueError(f"video must be floating point, got {jnp.result_type(video)}")
    if jnp.shape(video_positions) != (shape[0], 3):
        raise ValueError(f"video_positions must have shape ({shape[0]}, 3), got {jnp.shape(video_positions)}")
    check_valid(video_valid, (shape[0],))


@functools.partial(jax.jit, static_argnames=("config", "grid", "fastv", "logits"))
def _forward(params, prefix_ids, video, video_positions, video_valid, suffix_ids, *,
             config, grid, fastv, logits) -> VLMOutput:
    c = config
    p, k, s = prefix_ids.shape[0], video.shape[0], suffix_ids.shape[0]
    video_valid = jnp.asarray(video_valid).astype(bool)
    video = jnp.where(video_valid[:, None], jnp.asarray(video), 0).astype(jnp.float32)
    visual = Projector(c).apply({"params": params["projector"]}, video)
    visual = jnp.where(video_valid[:, None], visual, 0.0)
    x = jnp.concatenate([params["embed"][prefix_ids], visual, params["embed"][suffix_ids]])
    valid = jnp.concatenate([jnp.ones(p, bool), video_valid, jnp.ones(s, bool)])
    positions = sequence_positions(video_positions, prefix_len=p, suffix_len=s, grid=grid,
                                   temporal_stride=c.temporal_stride)
    positions = jnp.where(valid[:, None], positions, p)  # padding slots: any finite position
    slots, slot_valid = jnp.arange(k, dtype=jnp.int32), video_valid
    scores = jnp.zeros((k,), jnp.float32)
    split = c.num_layers if fastv is None else fastv.layer
    first = jax.tree.map(lambda a: a[:split], params["layers"])
    x, last_rows = _run_layers(first, x, positions, valid, c)
    if fastv is not None:
        scores = last_rows[-1, p:p + k]
        chosen = fastv_select(scores, video_valid, retain_ratio=fastv.retain_ratio)
        slots, slot_valid = chosen.indices, chosen.valid
        keep = jnp.concatenate([jnp.arange(p), p + jnp.minimum(slots, k - 1), jnp.arange(p + k, p + k + s)])
        valid = jnp.concatenate([jnp.ones(p, bool), slot_valid, jnp.ones(s, bool)])
        x, positions = jnp.where(valid[:, None], x[keep], 0.0), positions[keep]
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


def _run_layers(layers, x, positions, valid, config):
    """Apply a stack of layers with `lax.scan`; returns the hidden states and each layer's
    last-token attention row `(layers, L)`."""
    cos, sin = mrope_cos_sin(positions, head_dim=config.head_dim, theta=config.rope_theta,
                             section=config.mrope_section)
    layer = DecoderLayer(config)

    def step(h, layer_params):
        h, last_row = layer.apply({"params": layer_params}, h, cos, sin, valid)
        return jnp.where(valid[:, None], h, 0.0), last_row

    return jax.lax.scan(step, x, layers)


# ----------------------------------------------------------------------------------------
# From a video and a pruning decision to the LM.


def video_slots(
    tokens: Shaped[Array, "t h w v"],
    result: Decision | None = None,
    *,
    valid: Bool[Array, "t h w"] | None = None,
) -> tuple[Shaped[Array, "k v"], Int[Array, "k 3"], Bool[Array, "k"]]:
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
    tokens: Shaped[Array, "t h w v"],
    prefix_ids: Int[Array, "p"],
    suffix_ids: Int[Array, "s"],
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
    unpruned video's (module docstring).
    """
    check_tokens(tokens, valid)
    if result is not None and not isinstance(result, Decision):
        raise ValueError(f"result must be a Decision or None, got {type(result).__name__}")
    slots, positions, slot_valid = video_slots(tokens, result, valid=valid)
    return forward(params, prefix_ids, slots, positions, slot_valid, suffix_ids, config=config,
                   grid=tuple(tokens.shape[:3]), fastv=fastv, logits=logits)
