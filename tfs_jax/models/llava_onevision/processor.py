"""LLaVA-OneVision's video processor in numpy: frames to the SigLIP tower's square input.

The reference is patch 0 of transformers 4.51.3's slow `LlavaOnevisionImageProcessor`
output, applied per frame (the whole frame at the tower's size; the anyres tiles after it
are for images), which is also what its slow `LlavaOnevisionVideoProcessor` gives:

1. a bicubic resize by Pillow to `size` (`height x width`, 384 x 384 for the released
   checkpoints), aspect not kept, the resampler `image_transforms.resize` calls (equal bit
   for bit; patch 0's second resize to the same size is Pillow's identity copy);
2. rescale in float64 then cast to float32, and `(x - mean) / std` in float32, in the
   reference's order and dtypes (equal bit for bit again);
3. channels first: `(V=1, T, 3, H, W)`.

The settings come from the checkpoint's `preprocessor_config.json`; the class defaults
(OpenAI CLIP's mean and std) differ from the released checkpoints' (0.5, 0.5, 0.5), so a
folder without the file is refused rather than silently given the defaults.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, UInt8

# Pillow's resize, the reference's rescale/normalise and the settings file's checks: the
# same steps as Qwen2.5-VL's processor, shared with it.
from tfs_jax.models.qwen2_5_vl.processor import _normalized
from tfs_jax.models.qwen2_5_vl.processor import _resized
from tfs_jax.models.qwen2_5_vl.processor import read_settings


class ProcessorConfig(NamedTuple):
    """The knobs of a checkpoint's `preprocessor_config.json` that change the pixels
    (`LlavaOnevisionImageProcessor`'s defaults where a key is absent)."""

    height: int = 384
    width: int = 384
    image_mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)  # OPENAI_CLIP_MEAN
    image_std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
    rescale_factor: float = 1 / 255

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> ProcessorConfig:
        """Read `path/preprocessor_config.json`.

        Raises:
            ValueError: no such file, not JSON, a resize other than bicubic, a turned-off
                resize, rescale or normalisation, or a `size` without height and width.
        """
        file = pathlib.Path(path) / "preprocessor_config.json"
        if not file.is_file():
            raise ValueError(f"{path} has no preprocessor_config.json (LLaVA-OneVision's image mean "
                             "and std differ from the processor's defaults)")
        raw = read_settings(file)
        size = raw.get("size") or {"height": 384, "width": 384}
        if "height" not in size or "width" not in size:
            raise ValueError(f"{file}: size={size!r} must give height and width")
        kept = {k: tuple(raw[k]) if isinstance(raw[k], list) else raw[k]
                for k in ("image_mean", "image_std", "rescale_factor") if raw.get(k) is not None}
        return cls(height=int(size["height"]), width=int(size["width"]), **kept)


def preprocess_video(frames: UInt8[np.ndarray, "t h w 3"], *,
                     config: ProcessorConfig = ProcessorConfig()) -> Float[np.ndarray, "1 t 3 s s"]:
    """Frames at native size to `pixel_values_videos` `(1, T, 3, height, width)` float32.

    Args:
        frames: `(T, H, W, 3)` uint8 RGB.
        config: the checkpoint's settings (`ProcessorConfig.from_dir`); say them explicitly.

    Raises:
        ValueError: frames that are not uint8 `(T, H, W, 3)` with at least one frame.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 RGB (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    pixels = np.stack([_normalized(_resized(f, config.height, config.width), config) for f in frames])
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))[None]
