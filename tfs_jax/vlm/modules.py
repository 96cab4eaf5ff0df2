"""The toy LM's Flax modules and its parameter pytree, over the one decoder.

The decoder itself lives in `tfs_jax.models.decoder` (the LM of every real model); this
module keeps the toy's Flax names (`RMSNorm`, `Attention`, `DecoderLayer`, re-exported by
`tfs_jax.vlm` for one release) as thin modules over it, plus the toy's visual `Projector`.

Every matrix is initialised N(0, 0.02^2), biases 0, norm scales 1; the decoder layers are
stacked on a leading axis so that they run under `lax.scan` and FastV can split the stack.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from tfs_jax.models import decoder
from tfs_jax.models.decoder import attention_mask  # noqa: F401  (re-exported by tfs_jax.vlm)
from tfs_jax.vlm.config import VLMConfig

_init = nn.initializers.normal(stddev=0.02)


def _leaf_init(path, shape):
    """N(0, 0.02^2) for matrices, 0 for biases, 1 for norm scales."""
    name = path[-1].key
    if name == "scale":
        return lambda key: jnp.ones(shape.shape, jnp.float32)
    if name == "bias":
        return lambda key: jnp.zeros(shape.shape, jnp.float32)
    return lambda key: _init(key, shape.shape, jnp.float32)


def _declare(module: nn.Module, shapes: dict) -> dict:
    """Declare a subtree of `decoder.layer_shapes` as the module's parameters."""
    def init(key, tree):
        flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
        keys = jax.random.split(key, len(flat))
        return jax.tree.unflatten(treedef, [_leaf_init(path, s)(k) for (path, s), k in zip(flat, keys)])
    return {name: module.param(name, init, sub) for name, sub in shapes.items()}


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale, computed in float32 (Qwen2)."""

    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: Float[Array, "... hidden"]) -> Float[Array, "... hidden"]:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return decoder.rms_norm(x.astype(jnp.float32), scale, eps=self.eps)


class Attention(nn.Module):
    """Grouped-query causal self-attention with M-RoPE and a slot-validity mask."""

    config: VLMConfig

    @nn.compact
    def __call__(self, x, cos, sin, valid) -> tuple[Float[Array, "l hidden"], Float[Array, "l"]]:
        """Returns the attention output and the last slot's head-averaged attention row."""
        c = self.config.decoder
        p = _declare(self, decoder.layer_shapes(c)["self_attn"])
        q, k, v = decoder.project_qkv(p, x, cos, sin, config=c)
        index = jnp.arange(x.shape[0])
        out = decoder.attend(q, k, v, index, valid, valid, chunk_size=c.chunk_size)
        out = decoder.dense(p["o_proj"], out.reshape(x.shape[0], -1))
        return out, decoder.last_query_row(q, k, index, valid, valid)


class DecoderLayer(nn.Module):
    """Pre-norm attention and SwiGLU MLP blocks with residuals (Qwen2)."""

    config: VLMConfig

    @nn.compact
    def __call__(self, x, cos, sin, valid) -> tuple[Float[Array, "l hidden"], Float[Array, "l"]]:
        c = self.config.decoder
        p = _declare(self, decoder.layer_shapes(c))
        x, _, row = decoder.decoder_layer(p, x, cos, sin, valid, config=c)
        return x, row


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
    FastV splits the stack at its layer; `tfs_jax.models.decoder` names the leaves),
    "final_norm".
    """
    c = config
    stack = lambda s: jax.ShapeDtypeStruct((c.num_layers,) + s.shape, s.dtype)
    projector = jax.eval_shape(lambda k: Projector(c).init(k, jnp.zeros((1, c.vision_dim)))["params"],
                               jax.random.key(0))
    return {
        "embed": jax.ShapeDtypeStruct((c.vocab_size, c.hidden_size), jnp.float32),
        "projector": projector,
        "layers": jax.tree.map(stack, decoder.layer_shapes(c.decoder)),
        "final_norm": {"scale": jax.ShapeDtypeStruct((c.hidden_size,), jnp.float32)},
    }


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
