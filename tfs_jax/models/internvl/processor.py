"""InternVL's frame processor: uint8 frames to one normalised 448-px tile each.

The reference is transformers 4.52.4's slow `GotOcr2ImageProcessor` (InternVL's image
processor) applied frame by frame with `crop_to_patches=False`, i.e. the whole frame as one
tile, with the checkpoint's mean and std (ImageNet's for InternVL3.5), which is what
InternVL's video path feeds the tower (one tile of 256 tokens per frame):

1. resize to `size x size` (the aspect is not kept) with Pillow's bicubic filter, on the
   uint8 frame, as transformers' `resize` does (`PIL.Image.resize`): equal bit for bit;
2. rescale by 1/255 in float64 cast to float32, then `(x - mean) / std` in float32, the
   reference's order and dtypes (Qwen2.5-VL's processor steps, shared).

tests/test_models_internvl.py checks equality with the reference on the bundled clips.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, UInt8

from tfs_jax.models.qwen2_5_vl.processor import _checked_frames
from tfs_jax.models.qwen2_5_vl.processor import _normalized
from tfs_jax.models.qwen2_5_vl.processor import _resized
from tfs_jax.models.qwen2_5_vl.processor import read_settings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ProcessorConfig(NamedTuple):
    """The settings InternVL3.5's checkpoints ship (`preprocessor_config.json`)."""

    size: int = 448
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    rescale_factor: float = 1 / 255

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> ProcessorConfig:
        """From a checkpoint's `preprocessor_config.json` (defaults for absent keys; the file
        itself may be absent). `crop_to_patches` is the image path's: video frames are never
        cropped (one tile each), so it is not read."""
        file = pathlib.Path(path) / "preprocessor_config.json"
        # Qwen2.5-VL's reader: a JSON object, bicubic, resize/rescale/normalize on (the
        # only pixels reproduced here); anything else is refused, not silently ignored.
        raw = read_settings(file) if file.is_file() else {}
        size = raw.get("size") or {}
        if not isinstance(size, dict):
            raise ValueError(f"{file}: size={size!r} must be an object with height and width")
        height, width = size.get("height", cls.size), size.get("width", cls.size)
        if height != width:
            raise ValueError(f"{file}: size {height}x{width} must be square (one tile per frame)")
        return cls(size=int(height), image_mean=tuple(raw.get("image_mean", IMAGENET_MEAN)),
                   image_std=tuple(raw.get("image_std", IMAGENET_STD)),
                   rescale_factor=float(raw.get("rescale_factor", 1 / 255)))


def preprocess_frames(frames: UInt8[np.ndarray, "t h w 3"], *, config: ProcessorConfig = ProcessorConfig()
                      ) -> Float[np.ndarray, "t 3 s s"]:
    """`(T, H, W, 3)` uint8 frames to `pixel_values_videos` `(T, 3, size, size)` float32.

    Args:
      frames: uint8 RGB frames (any size of at least 1 pixel).
      config: size, mean, std, rescale factor.

    Returns:
      One normalised tile per frame, channels first (module docstring).
    """
    frames = _checked_frames(frames, "frames", 4)
    tiles = [_normalized(_resized(f, config.size, config.size), config) for f in frames]
    return np.stack(tiles).transpose(0, 3, 1, 2).astype(np.float32)
