"""Qwen2.5-VL's processor in numpy: frames or an image to the vision tower's patches.

The reference is transformers 4.51.3's slow `Qwen2VLImageProcessor` (which Qwen2.5-VL's
processor uses for images and videos alike) and `Qwen2_5_VLProcessor`:

1. `smart_resize`: both sides rounded to multiples of `factor = patch_size * merge_size`
   (28), then scaled into `[min_pixels, max_pixels]` with the aspect kept; sides under 28
   or an aspect over 200 are refused (the reference raises for both too);
2. a bicubic resize by Pillow, the resampler transformers calls (`image_transforms.resize`
   goes through `PIL.Image.resize`), so the pixels are equal bit for bit;
3. rescale in float64 then cast to float32, and `(x - mean) / std` in float32 with CLIP's
   mean and std, in the reference's order and dtypes (equal bit for bit again);
4. the frames padded to a multiple of `temporal_patch_size` by repeating the last one;
5. patches flattened as `(t, h/m, w/m, m, m)` rows of `(C, t_p, p, p)` values, the
   processor's order (rows of one merged token are consecutive);
6. `second_per_grid_ts = temporal_patch_size / fps` (`Qwen2_5_VLProcessor`).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int, UInt8

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OPENAI_CLIP_MEAN in transformers
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MIN_PIXELS = 56 * 56            # Qwen2VLImageProcessor's default size["shortest_edge"]
MAX_PIXELS = 28 * 28 * 1280     # its default size["longest_edge"]
MAX_ASPECT = 200
# qwen-vl-utils 0.0.14's video budgets (vision_process.py), before the processor sees frames.
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = int(float(128000 * 28 * 28 * 0.9))  # its default, about 115K video tokens


class ProcessorConfig(NamedTuple):
    """The knobs of a checkpoint's `preprocessor_config.json` that change the patches."""

    min_pixels: float = MIN_PIXELS
    max_pixels: float = MAX_PIXELS
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    rescale_factor: float = 1 / 255

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> ProcessorConfig:
        """Read `path/preprocessor_config.json` as transformers 4.51.3 reads it; defaults
        when it is absent. Its `size` is ignored, as 4.51.3's `__init__` replaces a given
        `size` by the defaults: only `min_pixels` and `max_pixels` set the budget.

        Raises:
            ValueError: the file is not JSON, or turns off the resize, rescale or
                normalization, or asks for a resize other than bicubic.
        """
        file = pathlib.Path(path) / "preprocessor_config.json"
        if not file.is_file():
            return cls()
        raw = read_settings(file)
        kept = {k: raw[k] for k in cls._fields if raw.get(k) is not None}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kept.items()})


def read_settings(file: pathlib.Path) -> dict:
    """A `preprocessor_config.json` as a dict; ValueError when it is not JSON, turns off the
    resize, rescale or normalisation, or asks for a resize other than bicubic (the only
    one these processors reproduce)."""
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
    if not isinstance(raw, dict) or raw.get("resample", 3) != 3 or not all(
            raw.get(k, True) for k in ("do_resize", "do_rescale", "do_normalize")):
        raise ValueError(f"{file}: only a bicubic resize (resample=3), rescaled and "
                         "normalized, is supported")
    return raw


class VideoInputs(NamedTuple):
    """One video as the model takes it.

    Attributes:
        pixel_values_videos: `(N, C * t_p * p * p)` float32, `(N, 1176)` for Qwen2.5-VL.
        video_grid_thw: `(1, 3)` int64, the patch grid `(t, h, w)` before merging.
        second_per_grid_ts: seconds per temporal patch, `temporal_patch_size / fps`.
    """

    pixel_values_videos: Float[np.ndarray, "n d"]
    video_grid_thw: Int[np.ndarray, "1 3"]
    second_per_grid_ts: float


class ImageInputs(NamedTuple):
    """One image as the model takes it: `pixel_values (N, 1176)`, `image_grid_thw (1, 3)`."""

    pixel_values: Float[np.ndarray, "n d"]
    image_grid_thw: Int[np.ndarray, "1 3"]


def smart_resize(
    height: int, width: int, *, factor: int = 28, min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """`(height, width)` after Qwen's resize: multiples of `factor`, pixels in
    `[min_pixels, max_pixels]`, aspect kept (transformers' `smart_resize`).

    >>> smart_resize(144, 176)
    (140, 168)
    >>> smart_resize(1000, 1000, max_pixels=28 * 28 * 4)   # floor(1000 / 500 / 28) * 28
    (56, 56)

    Raises:
        ValueError: a side under `factor`, an aspect over 200, or a budget that leaves a
            side at 0 pixels.
    """
    if height < factor or width < factor:
        raise ValueError(f"frames of {height}x{width} pixels (height x width) are too small: "
                         f"Qwen2.5-VL needs at least {factor} pixels on each side")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f"frames of {height}x{width} pixels have an aspect ratio over {MAX_ASPECT}")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar < factor or w_bar < factor:
        raise ValueError(f"{max_pixels=} leaves no {factor}x{factor} patch of a "
                         f"{height}x{width} frame")
    return h_bar, w_bar


def video_max_pixels(num_frames: int) -> float:
    """qwen-vl-utils 0.0.14's per-frame pixel cap for `num_frames` sampled frames, which
    keeps a long clip within its total budget (`fetch_video`):
    `max(min(VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS / n * 2), int(VIDEO_MIN_PIXELS * 1.05))`.

    >>> video_max_pixels(20), video_max_pixels(768)
    (602112, 235200.0)
    """
    if num_frames < 1:
        raise ValueError(f"{num_frames=} must be >= 1")
    return max(min(VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS / num_frames * 2),
               int(VIDEO_MIN_PIXELS * 1.05))


def preprocess_video(
    frames: UInt8[np.ndarray, "t h w 3"], *, fps: float = 2.0, min_pixels: float | None = None,
    max_pixels: float | None = None, config: ProcessorConfig = ProcessorConfig(),
) -> VideoInputs:
    """Frames at native size to the vision tower's patches, as transformers 4.51.3 gives them.

    Args:
        frames: `(T, H, W, 3)` uint8 RGB, every frame the same size (`video.sample_video`).
        fps: the rate the frames were sampled at (`SampledVideo.fps`).
        min_pixels, max_pixels: the resize budget; default `config`'s.
        config: the checkpoint's processor settings (`ProcessorConfig.from_dir`).
    Returns:
        a `VideoInputs`; `N = t * h * w` with `t = ceil(T / 2)`, `h, w` the resized sides / 14.
    Raises:
        ValueError: frames that are not uint8 `(T, H, W, 3)`, too small (under 28 pixels on
            a side), `fps <= 0`, or a budget out of order.
    """
    frames = _checked_frames(frames, "frames", 4)
    if not fps > 0:
        raise ValueError(f"{fps=} must be > 0")
    config = _with_budget(config, min_pixels, max_pixels)
    patches, grid = _patches(frames, config)
    return VideoInputs(patches, grid, config.temporal_patch_size / fps)


def preprocess_image(
    image: UInt8[np.ndarray, "h w 3"], *, min_pixels: int | None = None,
    max_pixels: int | None = None, config: ProcessorConfig = ProcessorConfig(),
) -> ImageInputs:
    """One RGB image to patches: a one-frame video (repeated to the temporal patch), as
    `Qwen2VLImageProcessor(images=...)` gives it; arguments as `preprocess_video`."""
    image = _checked_frames(image, "image", 3)
    config = _with_budget(config, min_pixels, max_pixels)
    patches, grid = _patches(image[None], config)
    return ImageInputs(patches, grid)


def _checked_frames(frames, name: str, ndim: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != ndim or frames.shape[-1] != 3:
        want = "(T, H, W, 3)" if ndim == 4 else "(H, W, 3)"
        raise ValueError(f"{name} must be uint8 RGB {want}, got {frames.dtype} {frames.shape}")
    if ndim == 4 and frames.shape[0] < 1:
        raise ValueError(f"{name} holds no frame")
    return frames


def _with_budget(config: ProcessorConfig, low: float | None, high: float | None) -> ProcessorConfig:
    low = config.min_pixels if low is None else low
    high = config.max_pixels if high is None else high
    if not 0 < low <= high:
        raise ValueError(f"min_pixels={low} and max_pixels={high} must satisfy 0 < min <= max")
    return config._replace(min_pixels=low, max_pixels=high)  # floats stay (smart_resize's beta)


def _patches(frames: np.ndarray, config: ProcessorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Resize, normalise, pad in time and flatten (module docstring, steps 1-5)."""
    p, tp, m = config.patch_size, config.temporal_patch_size, config.merge_size
    height, width = smart_resize(frames.shape[1], frames.shape[2], factor=p * m,
                                 min_pixels=config.min_pixels, max_pixels=config.max_pixels)
    pixels = np.stack([_normalized(_resized(f, height, width), config) for f in frames])
    pixels = pixels.transpose(0, 3, 1, 2)  # (T, C, H, W), the reference's data_format
    if pixels.shape[0] % tp:
        pad = np.repeat(pixels[-1:], tp - pixels.shape[0] % tp, axis=0)
        pixels = np.concatenate([pixels, pad])
    t, c, gh, gw = pixels.shape[0] // tp, pixels.shape[1], height // p, width // p
    pixels = pixels.reshape(t, tp, c, gh // m, m, p, gw // m, m, p)
    pixels = pixels.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return (np.ascontiguousarray(pixels.reshape(t * gh * gw, c * tp * p * p)),
            np.array([[t, gh, gw]], dtype=np.int64))


def _resized(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow's bicubic resize, the one transformers' `image_transforms.resize` calls."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))


def _normalized(frame: np.ndarray, config: ProcessorConfig) -> np.ndarray:
    """Rescale in float64 cast to float32, then `(x - mean) / std` in float32: the
    reference's `rescale` and `normalize`, operation for operation."""
    scaled = (frame.astype(np.float64) * config.rescale_factor).astype(np.float32)
    mean = np.array(config.image_mean, dtype=np.float32)
    std = np.array(config.image_std, dtype=np.float32)
    return (scaled - mean) / std
