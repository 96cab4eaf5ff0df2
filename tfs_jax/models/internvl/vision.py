"""InternVL's vision side: InternViT over 448-px tiles, pixel shuffle, the MLP projector.

transformers 4.52.4 (`InternVLVisionModel`, `InternVLModel.get_image_features`):

1. patch embedding: Conv2d with kernel = stride = `p` is one matmul of each `(C, p, p)`
   patch with a `(C*p*p, Dv)` kernel (plus bias); a class token in front; absolute position
   embeddings added (the tile is the trained size: no interpolation);
2. `depth` pre-norm blocks: norm (LayerNorm with bias, or RMSNorm, as the config names),
   attention over the whole tile (q/k/v biases and an RMSNorm over the whole projected q
   and k when configured), scaled by the layer scale `lambda_1`; norm, GELU MLP, `lambda_2`;
3. the feature layer: the last layer's output (through a final LayerNorm when
   `use_mean_pooling` is false) for `vision_feature_layer=-1`, else `hidden_states[layer]`
   (the input of that block); the class token dropped;
4. pixel shuffle at 0.5: each 2 x 2 block of the `(g, g)` patch grid becomes one token of
   `4 Dv` channels, `[x[2i, 2j], x[2i, 2j+1], x[2i+1, 2j], x[2i+1, 2j+1]]` (the order
   transformers' view/permute sequence gives);
5. the projector: LayerNorm, Linear, GELU (exact), Linear, to the LM width.

A tile of `g x g` patches gives `(g/2)^2` LM tokens in raster order (256 at 448 px): a video
of `T` frames is a `(T, g/2, g/2, d)` grid, which is what the pruner sees.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tfs_jax.models.decoder import dense
from tfs_jax.models.decoder import rms_norm
from tfs_jax.models.internvl.config import VisionConfig


def layer_norm(x: Float[Array, "... d"], p: dict, *, eps: float) -> Float[Array, "... d"]:
    """LayerNorm with scale and bias, statistics in float32."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype) * p["scale"] + p["bias"]


def _norm(p: dict, x, config: VisionConfig):
    if config.norm_type == "layer_norm":
        return layer_norm(x, p, eps=config.norm_eps)
    return rms_norm(x, p["scale"], eps=config.norm_eps)


def patch_embed(params: dict, pixel_values: Float[Array, "t c s s"], *, config: VisionConfig):
    """`(T, 1 + g^2, Dv)`: class token, then the patches in raster order, plus positions."""
    t, c, s, _ = pixel_values.shape
    p, g = config.patch_size, s // config.patch_size
    patches = pixel_values.reshape(t, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(t, g * g, c * p * p)
    x = dense(params["patch_embed"], patches.astype(params["patch_embed"]["kernel"].dtype))
    cls = jnp.broadcast_to(params["cls"], (t, 1, x.shape[-1])).astype(x.dtype)
    return jnp.concatenate([cls, x], axis=1) + params["pos"]


def vision_block(p: dict, x: Float[Array, "t n dv"], *, config: VisionConfig) -> Float[Array, "t n dv"]:
    """One InternViT block (module docstring, step 2), every tile attending over itself."""
    t, n, dv = x.shape
    heads = config.num_heads
    h = _norm(p["norm1"], x, config)
    q, k, v = (dense(p[f"{name}_proj"], h) for name in "qkv")
    if config.qk_norm:  # over the whole width, before the split into heads (transformers' order)
        q, k = rms_norm(q, p["q_norm"]["scale"], eps=1e-6), rms_norm(k, p["k_norm"]["scale"], eps=1e-6)
    split = lambda a: a.reshape(t, n, heads, dv // heads)
    scores = jnp.einsum("tqhe,tkhe->thqk", split(q), split(k), preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(scores / math.sqrt(dv // heads), axis=-1)
    out = jnp.einsum("thqk,tkhe->tqhe", probs.astype(v.dtype), split(v), preferred_element_type=jnp.float32)
    x = x + p["lambda_1"] * dense(p["proj"], out.reshape(t, n, dv).astype(x.dtype))
    mlp = dense(p["fc2"], jax.nn.gelu(dense(p["fc1"], _norm(p["norm2"], x, config)), approximate=False))
    return x + p["lambda_2"] * mlp


def pixel_shuffle(x: Float[Array, "t g g c"]) -> Float[Array, "t g2 g2 c4"]:
    """transformers' pixel shuffle at 0.5, the same view/permute sequence (module docstring)."""
    t, rows, cols, c = x.shape
    x = x.reshape(t, rows, cols // 2, 2 * c).transpose(0, 2, 1, 3)
    return x.reshape(t, cols // 2, rows // 2, 4 * c).transpose(0, 2, 1, 3)


def projector(p: dict, x: Float[Array, "... c4"]) -> Float[Array, "... d"]:
    """LayerNorm (eps 1e-5, torch's default), Linear, exact GELU, Linear."""
    h = dense(p["fc1"], layer_norm(x, p["norm"], eps=1e-5))
    return dense(p["fc2"], jax.nn.gelu(h, approximate=False))


def check_pixels(pixel_values, config: VisionConfig) -> None:
    """Tiles `(T, C, S, S)` at the tower's size; raises `ValueError` naming the argument."""
    shape = getattr(pixel_values, "shape", None)
    want = (config.num_channels, config.image_size, config.image_size)
    if shape is None or len(shape) != 4 or tuple(shape[1:]) != want or shape[0] < 1:
        raise ValueError(f"pixel_values must have shape (T, {', '.join(map(str, want))}) "
                         f"(T >= 1 tiles at the tower's size), got {shape}")


def vision_tower(params: dict, pixel_values: Float[Array, "t c s s"], *, config, hidden_states: bool = False):
    """Tiles to LM-width embeddings.

    Args:
      params: `{"visual": ..., "projector": ...}` of the loaded model.
      pixel_values: `(T, C, S, S)` normalised tiles (one per frame), `S = image_size`.
      config: the `InternVLConfig` (static).
      hidden_states: also return the tower's hidden states `(k + 1, T, 1 + g^2, Dv)` up to
        the feature layer `k`.

    Returns:
      `(T, (g/2)^2, d)` float32 embeddings (and the hidden states when asked).
    """
    check_pixels(pixel_values, config.vision)
    out, states = _tower(params["visual"], params["projector"], jnp.asarray(pixel_values), config=config,
                         hidden=hidden_states)
    return (out, states) if hidden_states else out


@functools.partial(jax.jit, static_argnames=("config", "hidden"))
def _tower(visual, proj, pixel_values, *, config, hidden):
    v, depth = config.vision, config.feature_depth
    x = patch_embed(visual, pixel_values, config=v)
    blocks = jax.tree.map(lambda a: a[:depth], visual["blocks"])

    def step(h, p):
        h = vision_block(p, h, config=v)
        return h, h if hidden else None

    out, states = jax.lax.scan(step, x, blocks)
    if config.vision_feature_layer == -1 and v.final_norm:
        out = layer_norm(out, visual["final_norm"], eps=v.norm_eps)
    g = v.grid
    feats = pixel_shuffle(out[:, 1:].reshape(out.shape[0], g, g, -1))
    feats = projector(proj, feats.reshape(out.shape[0], (g // 2) ** 2, -1)).astype(jnp.float32)
    return feats, jnp.concatenate([x[None], states]) if hidden else None
