"""The one decoder: Qwen2-style LM layers as pure functions over a parameter pytree.

Every real model's LM (Qwen2.5-VL) and the toy LM of `tfs_jax.vlm` run these functions;
variants are `DecoderConfig` fields, not copies: M-RoPE or 1-D RoPE (`mrope_section`),
q/k/v biases (`qkv_bias`), Qwen3's per-head q/k RMSNorm (`qk_norm`: an RMSNorm over each
head's `e` channels of the projected queries and keys, before RoPE) and a head width that is
not `hidden / heads` (`head_size`, Qwen3's `head_dim`).

A layer's parameters (one pytree, stacked on a leading layer axis for `lax.scan`):

    {"input_norm": {"scale": (d,)}, "post_attention_norm": {"scale": (d,)},
     "self_attn": {"q_proj": {"kernel": (d, H*e), "bias": (H*e,)}, "k_proj": ..., "v_proj": ...,
                   "o_proj": {"kernel": (H*e, d)}},
     "gate_proj": {"kernel": (d, I)}, "up_proj": {"kernel": (d, I)}, "down_proj": {"kernel": (I, d)}}

(`e` = head_dim, `H` heads, `I` the MLP width; no "bias" leaves without `qkv_bias`; with
`qk_norm`, "self_attn" also holds "q_norm" and "k_norm" {"scale": (e,)}).

Attention is computed query chunk by query chunk (`chunk_size`, static): at 7B width an
8,192-token prompt would otherwise hold `28 x 8192^2` fp32 scores per layer (7.5 GB);
chunked, a chunk of 512 queries holds 0.5 GB. A query at sequence index `i` sees the keys
`j <= i` that are valid, and itself (so a padding row's softmax stays finite).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.checks import check_count
from tfs_jax.checks import is_int

_SIZES = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
          "intermediate_size", "chunk_size")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Static sizes and variant flags of the decoder (hashable: a `jax.jit` static argument).

    Attributes:
      vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size: sizes
        (`num_heads` a multiple of `num_kv_heads`, `hidden_size` of `num_heads`).
      rope_theta: RoPE base.
      mrope_section: bands given to (t, h, w), summing to `head_dim // 2` (M-RoPE); `None`
        for 1-D RoPE (positions' first row only).
      rms_eps: RMSNorm epsilon.
      qkv_bias: q/k/v projections carry a bias (Qwen2, Qwen2.5).
      qk_norm: Qwen3's per-head q/k RMSNorm (over `head_dim`, before RoPE).
      head_size: the per-head width when it is not `hidden_size // num_heads` (Qwen3's
        `head_dim`); None for that quotient.
      chunk_size: queries per attention chunk (prompts longer than this are chunked).
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] | None = None
    rms_eps: float = 1e-6
    qkv_bias: bool = True
    qk_norm: bool = False
    chunk_size: int = 512
    head_size: int | None = None

    def __post_init__(self):
        for name in _SIZES:
            check_count(name, getattr(self, name), 1)
        if self.head_size is not None:
            check_count("head_size", self.head_size, 1)
        elif self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads} "
                             "(or give head_size)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.mrope_section is not None:
            section = tuple(self.mrope_section)
            if len(section) != 3 or not all(is_int(s) and s >= 0 for s in section):
                raise ValueError(f"mrope_section={self.mrope_section!r} must be three integers >= 0")
            if sum(section) != self.head_dim // 2:
                raise ValueError(f"mrope_section={section} must sum to head_dim // 2 = {self.head_dim // 2}")
            object.__setattr__(self, "mrope_section", section)
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
            raise ValueError(f"rope_theta={self.rope_theta!r} must be a finite number > 1")
        if not (math.isfinite(self.rms_eps) and self.rms_eps > 0):
            raise ValueError(f"rms_eps={self.rms_eps!r} must be a finite number > 0")

    @property
    def head_dim(self) -> int:
        return self.head_size or self.hidden_size // self.num_heads

    @property
    def section(self) -> tuple[int, int, int]:
        """The M-RoPE bands; 1-D RoPE is every band on the first position row."""
        return self.mrope_section or (self.head_dim // 2, 0, 0)


# ----------------------------------------------------------------------------------------
# Rotary embedding.


def mrope_cos_sin(
    positions: Int[Array, "l 3"], *, head_dim: int, theta: float, section: tuple[int, int, int]
) -> tuple[Float[Array, "l head_dim"], Float[Array, "l head_dim"]]:
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


def apply_rope(x: Float[Array, "l ... head_dim"], cos: Float[Array, "l head_dim"], sin: Float[Array, "l head_dim"]):
    """`x * cos + rotate_half(x) * sin` on the last axis, broadcast over head axes."""
    extra = (None,) * (x.ndim - 2)
    cos, sin = cos[(slice(None), *extra)], sin[(slice(None), *extra)]
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rotated * sin).astype(x.dtype)


def rope_for(positions: Int[Array, "l 3"], config: DecoderConfig):
    """`mrope_cos_sin` with the config's theta and bands."""
    return mrope_cos_sin(positions, head_dim=config.head_dim, theta=config.rope_theta,
                         section=config.section)


# ----------------------------------------------------------------------------------------
# Blocks.


def rms_norm(x: Float[Array, "... d"], scale: Float[Array, "d"], *, eps: float) -> Float[Array, "... d"]:
    """Root-mean-square norm computed in float32, returned in `x`'s dtype times the scale."""
    xf = x.astype(jnp.float32)
    normed = (xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)).astype(x.dtype)
    return scale * normed


def dense(p: dict, x: Array) -> Array:
    """`x @ kernel (+ bias)`; a Flax-style `{"kernel", "bias"?}` leaf dict."""
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def allowed_keys(query_index: Int[Array, "q"], key_valid: Bool[Array, "k"],
                 query_valid: Bool[Array, "q"] | None = None) -> Bool[Array, "q k"]:
    """`mask[q, k]`: causal (`k <= query_index[q]`) among valid keys, and always itself.

    With `query_valid`, an invalid query sees only itself (its row stays finite).
    """
    keys = jnp.arange(key_valid.shape[0])
    mask = (keys[None, :] <= query_index[:, None]) & key_valid[None, :]
    if query_valid is not None:
        mask = mask & query_valid[:, None]
    return mask | (keys[None, :] == query_index[:, None])


def attention_mask(valid: Bool[Array, "l"]) -> Bool[Array, "l l"]:
    """The toy LM's mask over its own sequence: causal among valid slots, padding sees itself."""
    return allowed_keys(jnp.arange(valid.shape[0]), valid, valid)


def _attend_block(q, k, v, query_index, key_valid, query_valid):
    """Softmax attention of one query block: q `(c, g_kv, g, e)`, k/v `(l, g_kv, e)`."""
    scores = jnp.einsum("qhgd,khd->hgqk", q, k, preferred_element_type=jnp.float32)
    scores = scores / math.sqrt(q.shape[-1])
    scores = jnp.where(allowed_keys(query_index, key_valid, query_valid), scores, -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("hgqk,khd->qhgd", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)


def attend(
    q: Float[Array, "q kv g e"],
    k: Float[Array, "l kv e"],
    v: Float[Array, "l kv e"],
    query_index: Int[Array, "q"],
    key_valid: Bool[Array, "l"],
    query_valid: Bool[Array, "q"] | None = None,
    *,
    chunk_size: int,
) -> Float[Array, "q kv g e"]:
    """Grouped-query attention, computed `chunk_size` queries at a time (float32 out).

    Chunking changes memory, not values: every query block sees all keys, so the result
    equals the one-block computation (tests/test_models_qwen2_5_vl.py checks it).
    """
    n = q.shape[0]
    qv = jnp.ones((n,), bool) if query_valid is None else query_valid
    if n <= chunk_size:
        return _attend_block(q, k, v, query_index, key_valid, query_valid)
    blocks = -(-n // chunk_size)
    pad = blocks * chunk_size - n
    qs = jnp.pad(q, ((0, pad),) + ((0, 0),) * 3).reshape(blocks, chunk_size, *q.shape[1:])
    qi = jnp.pad(query_index, (0, pad), constant_values=0).reshape(blocks, chunk_size)
    qm = jnp.pad(qv, (0, pad)).reshape(blocks, chunk_size)
    out = jax.lax.map(lambda a: _attend_block(a[0], k, v, a[1], key_valid, a[2]), (qs, qi, qm))
    return out.reshape(blocks * chunk_size, *out.shape[2:])[:n]


def project_qkv(p: dict, x: Float[Array, "l d"], cos, sin, *, config: DecoderConfig):
    """Queries `(l, kv, g, e)` and keys, values `(l, kv, e)` of one layer, RoPE applied."""
    c = config
    length, e = x.shape[0], c.head_dim
    q = dense(p["q_proj"], x).reshape(length, c.num_kv_heads, c.num_heads // c.num_kv_heads, e)
    k = dense(p["k_proj"], x).reshape(length, c.num_kv_heads, e)
    v = dense(p["v_proj"], x).reshape(length, c.num_kv_heads, e)
    if c.qk_norm:  # Qwen3: each head's queries and keys RMS-normed before the rotation
        q = rms_norm(q, p["q_norm"]["scale"], eps=c.rms_eps)
        k = rms_norm(k, p["k_norm"]["scale"], eps=c.rms_eps)
    return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v


def _mlp(p: dict, x: Array) -> Array:
    """SwiGLU without biases (Qwen2)."""
    return dense(p["down_proj"], jax.nn.silu(dense(p["gate_proj"], x)) * dense(p["up_proj"], x))


def last_query_row(q, k, query_index, key_valid, query_valid) -> Float[Array, "l"]:
    """The last query's head-averaged attention row over the keys (FastV's ranking)."""
    probs = jax.nn.softmax(
        jnp.where(allowed_keys(query_index[-1:], key_valid, query_valid[-1:])[0],
                  jnp.einsum("hgd,khd->hgk", q[-1], k, preferred_element_type=jnp.float32)
                  / math.sqrt(q.shape[-1]), -jnp.inf), axis=-1)
    return jnp.mean(probs, axis=(0, 1))


def decoder_layer(
    p: dict,
    x: Float[Array, "l d"],
    cos: Float[Array, "l e"],
    sin: Float[Array, "l e"],
    valid: Bool[Array, "l"],
    *,
    config: DecoderConfig,
):
    """One pre-norm layer over a whole sequence (prefill).

    Args:
      p: one layer's parameters (module docstring).
      x: `(l, d)` hidden states; `cos`, `sin` from `rope_for(positions, config)`.
      valid: `(l,)` slot validity (invalid slots are seen by no one).
      config: the decoder (static).

    Returns:
      `(x, (k, v), last_row)`: the layer's output, its keys and values `(l, kv, e)` (what
      a KV cache stores) and the last query's head-averaged attention row `(l,)`.
    """
    h = rms_norm(x, p["input_norm"]["scale"], eps=config.rms_eps)
    q, k, v = project_qkv(p["self_attn"], h, cos, sin, config=config)
    index = jnp.arange(x.shape[0])
    out = attend(q, k, v, index, valid, valid, chunk_size=config.chunk_size)
    row = last_query_row(q, k, index, valid, valid)
    x = x + dense(p["self_attn"]["o_proj"], out.reshape(x.shape[0], -1).astype(x.dtype))
    x = x + _mlp(p, rms_norm(x, p["post_attention_norm"]["scale"], eps=config.rms_eps))
    return x, (k, v), row


def decoder_step(
    p: dict,
    x: Float[Array, "1 d"],
    cos: Float[Array, "1 e"],
    sin: Float[Array, "1 e"],
    cache: tuple[Array, Array],
    index: Int[Array, ""],
    *,
    config: DecoderConfig,
):
    """One layer for one new token written at cache slot `index` (decode).

    Args:
      cache: keys and values `(c, kv, e)` of this layer; slots `< index` hold the sequence.
      index: the new token's cache slot (int32 scalar, traced).

    Returns:
      `(x, cache)` with the new key and value written at `index`.
    """
    h = rms_norm(x, p["input_norm"]["scale"], eps=config.rms_eps)
    q, k, v = project_qkv(p["self_attn"], h, cos, sin, config=config)
    keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), index, axis=0)
    values = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), index, axis=0)
    everything = jnp.ones((keys.shape[0],), bool)
    out = _attend_block(q, keys, values, jnp.reshape(index, (1,)), everything, None)
    x = x + dense(p["self_attn"]["o_proj"], out.reshape(1, -1).astype(x.dtype))
    x = x + _mlp(p, rms_norm(x, p["post_attention_norm"]["scale"], eps=config.rms_eps))
    return x, (keys, values)


# ----------------------------------------------------------------------------------------
# The stack.


def run_layers(layers: dict, x, positions, valid, *, config: DecoderConfig, zero_invalid: bool = True,
               keep_hidden: bool = False, keep_kv: bool = False):
    """A stack of layers (leading axis) over a sequence under `lax.scan`.

    Args:
      layers: stacked layer parameters; `x` `(l, d)`; `positions` `(l, 3)`; `valid` `(l,)`.
      config: the decoder (static).
      zero_invalid: zero invalid slots after every layer (the toy LM's rule).
      keep_hidden, keep_kv: also return every layer's output / keys and values (static:
        at 7B width and 8,192 tokens they are GBs, so only when asked).

    Returns:
      `(x, hidden, (k, v), rows)`: the last layer's output; every layer's output
      `(layers, l, d)` or None; keys and values `(layers, l, kv, e)` or None; every
      layer's last-query attention row `(layers, l)` (FastV's ranking).
    """
    cos, sin = rope_for(positions, config)

    def step(h, p):
        h, kv, row = decoder_layer(p, h, cos, sin, valid, config=config)
        h = jnp.where(valid[:, None], h, 0).astype(h.dtype) if zero_invalid else h
        return h, (h if keep_hidden else None, kv if keep_kv else None, row)

    x, (hidden, kv, rows) = jax.lax.scan(step, x, layers)
    return x, hidden, kv, rows


def step_layers(layers: dict, x, positions, cache, index, *, config: DecoderConfig):
    """A stack of layers for one token at cache slot `index`; returns `(x, cache)`."""
    cos, sin = rope_for(positions, config)

    def step(h, args):
        p, layer_cache = args
        h, layer_cache = decoder_step(p, h, cos, sin, layer_cache, index, config=config)
        return h, layer_cache

    return jax.lax.scan(step, x, (layers, cache))


def layer_shapes(config: DecoderConfig, dtype=jnp.float32) -> dict:
    """One layer's parameter shapes (`jax.ShapeDtypeStruct` leaves; module docstring)."""
    c, hd = config, config.head_dim
    s = lambda *shape: jax.ShapeDtypeStruct(shape, dtype)
    proj = lambda out: {"kernel": s(c.hidden_size, out), **({"bias": s(out)} if c.qkv_bias else {})}
    norms = {"q_norm": {"scale": s(hd)}, "k_norm": {"scale": s(hd)}} if c.qk_norm else {}
    return {
        "input_norm": {"scale": s(c.hidden_size)},
        "self_attn": {"q_proj": proj(c.num_heads * hd), "k_proj": proj(c.num_kv_heads * hd),
                      "v_proj": proj(c.num_kv_heads * hd), "o_proj": {"kernel": s(c.num_heads * hd, c.hidden_size)},
                      **norms},
        "post_attention_norm": {"scale": s(c.hidden_size)},
        "gate_proj": {"kernel": s(c.hidden_size, c.intermediate_size)},
        "up_proj": {"kernel": s(c.hidden_size, c.intermediate_size)},
        "down_proj": {"kernel": s(c.intermediate_size, c.hidden_size)},
    }
