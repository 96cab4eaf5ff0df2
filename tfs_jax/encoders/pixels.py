"""Weight-free tokens for machines without the DINOv2 weights: the ImageNet-normalised
14 x 14 pixel patches of each frame, optionally through a fixed random projection; same
call and same grid as `DinoV2Encoder` (16 x 16 for 224 px frames).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt8

from tfs_jax.checks import check_frames
from tfs_jax.encoders.preprocess import HIGHEST
from tfs_jax.encoders.preprocess import PATCH_SIZE
from tfs_jax.encoders.preprocess import normalize_pixels


@functools.lru_cache(maxsize=8)
def _fixed_projection(in_dim: int, out_dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((in_dim, out_dim)) / math.sqrt(in_dim)).astype(np.float32)


@jax.jit
def pixel_patches(frames: UInt8[Array, "b y x 3"]) -> Float[Array, "b h w 588"]:
    """ImageNet-normalised 14 x 14 RGB patches, each flattened in `(row, col, channel)` order,
    on the `(Y / 14, X / 14)` grid."""
    b, gh, gw = frames.shape[0], frames.shape[1] // PATCH_SIZE, frames.shape[2] // PATCH_SIZE
    x = normalize_pixels(frames).reshape(b, gh, PATCH_SIZE, gw, PATCH_SIZE, 3)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, gh, gw, PATCH_SIZE * PATCH_SIZE * 3)


@jax.jit
def _project(patches: Float[Array, "b g g p"], projection: Float[Array, "patch d"]):
    return jnp.einsum("bhwp,pd->bhwd", patches, projection, precision=HIGHEST)


@dataclasses.dataclass(frozen=True)
class PixelPatchEncoder:
    """Weight-free tokens: `encoder(frames (T, Y, X, 3)) -> (T, Y/14, X/14, D)`.

    Each token is the ImageNet-normalised 14 x 14 x 3 patch under it (`D = 588`), or, with
    `dim` set, that vector times a fixed Gaussian matrix `(588, dim) / sqrt(588)` drawn
    from `numpy.random.default_rng(seed)` (a Johnson-Lindenstrauss map: cosines survive).
    """

    dim: int | None = None
    seed: int = 0

    @property
    def name(self) -> str:
        return "pixel-patch-14" if self.dim is None else f"pixel-patch-14-proj{self.dim}"

    def __call__(self, frames: UInt8[Array, "t y x 3"]) -> Float[Array, "t h w d"]:
        check_frames(frames, size=None)
        patches = pixel_patches(frames)
        if self.dim is None:
            return patches
        if self.dim < 1:
            raise ValueError(f"{self.dim=} must be >= 1 (or None for raw patches)")
        return _project(patches, _fixed_projection(patches.shape[-1], self.dim, self.seed))
