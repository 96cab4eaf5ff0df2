"""The LM's Flax modules (Qwen2 decoder, visual projector) and its parameter pytree.

Every matrix is initialised N(0, 0.02^2), biases 0, norm scales 1; the decoder layers are
stacked on a leading axis so that they run under `lax.scan` and FastV can split the stack.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from tfs_jax.vlm.config import VLMConfig
from tfs_jax.vlm.rope import apply_rope

_init = nn.initializers.normal(stddev=0.02)


def attention_mask(valid: Bool[Array, "l"]) -> Bool[Array, "l l"]:
    """`mask[q, k]`: query slot q may attend key slot k.

    Causal among valid slots; a padding slot attends only to itself (so its row of the
    softmax is finite) and no other slot attends to it.
    """
    idx = jnp.arange(valid.shape[0])
    causal = idx[None, :] <= idx[:, None]
    return (causal & valid[:, None] & valid[None, :]) | (idx[:, None] == idx[None, :])


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale, computed in float32 (Qwen2)."""

    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: Float[Array, "... hidden"]) -> Float[Array, "... hidden"]:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x = x.astype(jnp.float32)
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * scale


class Attention(nn.Module):
    """Grouped-query causal self-attention with M-RoPE and a slot-validity mask."""

    config: VLMConfig

    @nn.compact
    def __call__(self, x, cos, sin, valid) -> tuple[Float[Array, "l hidden"], Float[Array, "l"]]:
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
    def __call__(self, x, cos, sin, valid) -> tuple[Float[Array, "l hidden"], Float[Array, "l"]]:
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
    def __call__(self, x: Float[Array, "k d"]) -> Float[Array, "k hidden"]:
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
