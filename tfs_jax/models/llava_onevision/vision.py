"""LLaVA-OneVision's video features in JAX: SigLIP, the projector, the 2x2 pooling.

transformers 4.51.3's `LlavaOnevisionForConditionalGeneration.get_video_features`:

1. every frame, at the tower's square input `S`, through SigLIP (`SiglipVisionTransformer`):
   a stride-`p` "valid" patch convolution (here a matmul over `(C, p, p)` patches; the last
   `S mod p` pixel rows and columns are never seen), plus learned position embeddings (no
   class token), then pre-norm layers: `x + attn(LN1(x))`, `x + fc2(act(fc1(LN2(x))))`,
   full attention within the frame, `act` the config's GELU;
2. the hidden states of `vision_feature_layer` (the output of that layer, before the
   post-layernorm, which this path never applies), several concatenated on the feature axis;
3. the projector: `linear_2(act(linear_1(x)))`;
4. `apply_pooling`: the `(g, g)` grid resized to `(ceil(g/2), ceil(g/2))` by
   `F.interpolate(mode="bilinear", align_corners=False)`, without antialiasing (27x27 ->
   14x14 at 384 px: the weights are not a 2x2 average);
5. frames concatenated; one `image_newline` per video goes after it (`Model.prompt`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from tfs_jax.models.decoder import dense
from tfs_jax.models.llava_onevision.config import LlavaOnevisionConfig
from tfs_jax.models.llava_onevision.config import VisionConfig


def layer_norm(x: Array, p: dict, *, eps: float) -> Array:
    """LayerNorm computed in float32, returned in `x`'s dtype."""
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    normed = (xf - mean) * jax.lax.rsqrt(var + eps)
    return (normed * p["scale"].astype(jnp.float32) + p["bias"].astype(jnp.float32)).astype(x.dtype)


def gelu(x: Array, kind: str) -> Array:
    """transformers' "gelu" (erf) or "gelu_pytorch_tanh" (tanh approximation)."""
    return jax.nn.gelu(x, approximate=kind == "gelu_pytorch_tanh")


def patch_embed(p: dict, frames: Float[Array, "f c s s"], *, config: VisionConfig) -> Float[Array, "f n dv"]:
    """The patch convolution as a matmul, plus the position embeddings: `(f, g*g, Dv)`."""
    g, ps = config.grid, config.patch_size
    x = frames[:, :, :g * ps, :g * ps].reshape(frames.shape[0], frames.shape[1], g, ps, g, ps)
    x = x.transpose(0, 2, 4, 1, 3, 5).reshape(frames.shape[0], g * g, -1)
    return dense(p["patch_embed"], x.astype(p["patch_embed"]["kernel"].dtype)) + p["position"]


def encoder_layer(p: dict, x: Float[Array, "f n dv"], *, config: VisionConfig) -> Float[Array, "f n dv"]:
    """One SigLIP layer over every frame (full attention within a frame)."""
    f, n, _ = x.shape
    heads, e = config.num_heads, config.head_dim
    h = layer_norm(x, p["norm1"], eps=config.layer_norm_eps)
    q, k, v = (dense(p[name], h).reshape(f, n, heads, e) for name in ("q_proj", "k_proj", "v_proj"))
    scores = jnp.einsum("fqhe,fkhe->fhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(e)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("fhqk,fkhe->fqhe", probs, v, preferred_element_type=jnp.float32)
    x = x + dense(p["out_proj"], out.reshape(f, n, -1).astype(x.dtype))
    h = layer_norm(x, p["norm2"], eps=config.layer_norm_eps)
    return x + dense(p["fc2"], gelu(dense(p["fc1"], h), config.hidden_act))


def tower_features(params: dict, frames, *, config: LlavaOnevisionConfig):
    """SigLIP's hidden states at `config.feature_layers`, concatenated: `(f, g*g, F)`.

    Only layers up to the deepest feature layer run (later ones cannot change it).
    """
    v = config.vision
    x = patch_embed(params, frames, config=v)
    states, done = {}, 0
    for stop in sorted(set(config.feature_layers)):  # static segments of the layer stack
        segment = jax.tree.map(lambda a: a[done:stop], params["layers"])  # noqa: B023
        x, _ = jax.lax.scan(lambda h, p: (encoder_layer(p, h, config=v), None), x, segment)
        states[stop], done = x, stop
    return jnp.concatenate([states[i] for i in config.feature_layers], axis=-1)


def project(p: dict, x: Array, *, act: str) -> Array:
    """The 2-layer projector `linear_2(act(linear_1(x)))`."""
    return dense(p["linear_2"], gelu(dense(p["linear_1"], x), act))


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """`(size_out, size_in)` weights of torch's 1-D bilinear resize, `align_corners=False`,
    no antialiasing: output `o` samples `s = max((o + 0.5) * in / out - 0.5, 0)` between
    rows `floor(s)` and `min(floor(s) + 1, in - 1)` (computed in float32, as torch does)."""
    scale = np.float32(size_in) / np.float32(size_out)
    src = np.maximum(scale * (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                     np.float32(0))
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    frac = (src - low).astype(np.float32)
    out = np.zeros((size_out, size_in), np.float32)
    np.add.at(out, (np.arange(size_out), low), 1 - frac)
    np.add.at(out, (np.arange(size_out), high), frac)
    return out


def pool(x: Float[Array, "f g g d"]) -> Float[Array, "f q q d"]:
    """`apply_pooling`: the grid bilinearly resized to `ceil(g / 2)` on each side."""
    g = x.shape[1]
    m = jnp.asarray(bilinear_matrix(g, -(-g // 2)))
    return jnp.einsum("ai,fijd,bj->fabd", m, x.astype(jnp.float32), m,
                      precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.jit, static_argnames=("config",))
def video_features(params: dict, frames: Float[Array, "f c s s"], *, config: LlavaOnevisionConfig):
    """Frames `(f, C, S, S)` to pooled, projected features `(f, q, q, d)` float32."""
    feats = tower_features(params["visual"], frames, config=config)
    g = config.vision.grid
    projected = project(params["projector"], feats, act=config.projector_act)
    return pool(projected.reshape(frames.shape[0], g, g, -1))
