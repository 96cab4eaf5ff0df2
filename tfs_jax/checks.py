"""The library's shared input checks (after optax's `utils.check_*`).

Checks used by more than one entry point live here; a few that belong to one entry point
stay inline there (`tfs_jax.vlm.forward`, `tfs_jax.serving`, `VLMConfig`). Each check
raises a `ValueError` that names the argument and what is wrong with it. Array checks read
shapes and dtypes only, so they work on tracers too and run before anything is traced;
`check_finite` reads values and is for eager entry points (the command line, loaders),
since the pure functions treat a non-finite valid token as padding (algorithm §Notation).
"""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np

from tfs_jax.budget import retain_fraction

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
IMPLS = ("auto", "xla", "pallas", "interpret")
IMAGE_SIZE = 224  # side of the square frames the encoders take by default
PATCH_SIZE = 14  # pixels a side of the encoders' patches: any frame of whole patches encodes
ENCODER_KINDS = ("auto", "dinov2", "pixels")  # tfs_jax.encoders.get_encoder; here, without flax
ROPE_CONVENTIONS = ("qwen", "transformers5")  # tfs_jax.serving.qwen_vl_rope_index


def is_int(value) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """A Python or numpy real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_real_dtype(dtype) -> bool:
    """A numpy integer or floating dtype: not bool, complex, string or object."""
    dtype = np.dtype(dtype)
    return dtype != np.bool_ and (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    )


# ----------------------------------------------------------------------------- arrays


def check_tokens(tokens, valid=None) -> None:
    """`tokens` is a `(T, H, W, D)` float array with no empty axis; `valid`, if given, a
    boolean or integer `(T, H, W)` mask."""
    shape, dtype = getattr(tokens, "shape", None), getattr(tokens, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"tokens must be an array, got {type(tokens).__name__}")
    if len(shape) != 4:
        raise ValueError(f"tokens must have shape (T, H, W, D), got rank {len(shape)}: {shape}")
    if 0 in shape:
        raise ValueError(f"tokens must not have an empty axis, got shape {shape}")
    if np.dtype(dtype).name not in FLOAT_DTYPES:
        raise ValueError(
            f"tokens must be float16, bfloat16, float32 or float64, got {np.dtype(dtype)}"
        )
    if valid is not None:
        check_valid(valid, shape[:3])


def check_valid(valid, grid: tuple[int, ...], name: str = "valid") -> None:
    """`valid` is a boolean or integer mask of shape `grid`."""
    shape, dtype = getattr(valid, "shape", None), getattr(valid, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"{name} must be an array, got {type(valid).__name__}")
    if tuple(shape) != tuple(grid):
        raise ValueError(f"{name} must have shape {tuple(grid)}, got {tuple(shape)}")
    if not (np.dtype(dtype) == np.bool_ or np.issubdtype(np.dtype(dtype), np.integer)):
        raise ValueError(f"{name} must be a boolean mask, got dtype {np.dtype(dtype)}")


def check_shape(name: str, array, shape: tuple[int, ...]) -> None:
    """`array` has exactly `shape` (a stage's input contract)."""
    got = getattr(array, "shape", None)
    if got is None or tuple(got) != tuple(shape):
        got = None if got is None else tuple(got)
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {got}")


def check_finite(tokens, valid=None) -> None:
    """Eager check for loaders and the command line: no valid token holds NaN or inf. The
    message says how many and where (the first five `(t, h, w)`).

    A JAX array is checked where it lives: one count comes back from the device (and the
    `(T, H, W)` mask only when something is wrong), never the tokens."""
    check_tokens(tokens, valid)
    if isinstance(tokens, jax.Array):
        bad = ~jax.numpy.all(jax.numpy.isfinite(tokens), axis=-1)
        if valid is not None:
            bad &= jax.numpy.asarray(valid).astype(bool)
    else:
        bad = ~np.all(np.isfinite(np.asarray(tokens, np.float32)), axis=-1)
        if valid is not None:
            bad &= np.asarray(valid).astype(bool)
    count = int(bad.sum())
    if count:
        where = [tuple(int(i) for i in idx) for idx in np.argwhere(np.asarray(bad))[:5]]
        more = ", ..." if count > 5 else ""
        raise ValueError(
            f"{count} valid token(s) hold NaN or inf, at (t, h, w) {str(where)[1:-1]}{more}"
        )


def check_frames(frames, *, size: int | None = IMAGE_SIZE) -> None:
    """`frames` is a uint8 `(T, size, size, 3)` RGB array with T >= 1; with `size=None`,
    `(T, Y, X, 3)` with `Y` and `X` positive multiples of `PATCH_SIZE` (whole patches)."""
    shape, dtype = getattr(frames, "shape", None), getattr(frames, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"frames must be an array, got {type(frames).__name__}")
    if size is None:
        if (len(shape) != 4 or shape[-1] != 3 or shape[0] < 1
                or any(s < PATCH_SIZE or s % PATCH_SIZE for s in shape[1:3])):
            raise ValueError(f"frames must have shape (T, Y, X, 3) with T >= 1 and Y, X "
                             f"positive multiples of {PATCH_SIZE}, got {tuple(shape)}")
    elif len(shape) != 4 or tuple(shape[1:]) != (size, size, 3) or shape[0] < 1:
        raise ValueError(f"frames must have shape (T, {size}, {size}, 3) with T >= 1, "
                         f"got {tuple(shape)}")
    if np.dtype(dtype) != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got dtype {np.dtype(dtype)}")


# ----------------------------------------------------------------------------- options


def check_key(key) -> None:
    """`key` is None, a single typed PRNG key or a legacy `uint32[2]` key."""
    if key is None:
        return
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is None:
        raise ValueError(f"key must be a PRNG key array, got {type(key).__name__}")
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"key must be a single PRNG key, got shape {shape}")
    elif tuple(shape) != (2,) or np.dtype(dtype) != np.uint32:
        raise ValueError(f"key must be a typed key or a uint32[2] legacy key, got {dtype}{list(shape)}")


def check_impl(impl: str) -> str:
    """`impl` names a neighbourhood-op implementation (`tfs_jax.kernels.dispatch`)."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} must be one of {IMPLS}")
    return impl


def check_retain_ratio(retain_ratio, name: str = "retain_ratio") -> float:
    """A Python number in (0, 1] at least the ratio resolution 1/10,000 (algorithm §7); returns
    it as a float. It sets an output size, so a traced value is refused."""
    if isinstance(retain_ratio, jax.core.Tracer):
        raise ValueError(
            f"{name} must be a Python number (it sets the output size); under jax.jit "
            f"pass it as static: jax.jit(f, static_argnames='{name}')"
        )
    if not is_real(retain_ratio) or not math.isfinite(retain_ratio) or not 0 < retain_ratio <= 1:
        raise ValueError(f"{name}={retain_ratio!r} must be a finite number in (0, 1]")
    if retain_fraction(retain_ratio) == 0:
        raise ValueError(f"{name}={retain_ratio!r} is below the ratio resolution 1/10,000")
    return float(retain_ratio)


def check_count(name: str, value, lowest: int) -> int:
    """An integer (not a bool) `>= lowest`."""
    if not is_int(value) or value < lowest:
        raise ValueError(f"{name}={value!r} must be an integer >= {lowest}")
    return int(value)


def check_radius3(name: str, value) -> tuple[int, int, int]:
    """Three non-negative integers `(rt, rh, rw)`."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ValueError(f"{name}={value!r} must be a tuple of three integers (rt, rh, rw)")
    for r in value:
        if not is_int(r) or r < 0:
            raise ValueError(f"{name}={value!r} must hold non-negative integers")
    return tuple(int(r) for r in value)


def check_flag(name: str, value) -> bool:
    """A Python or numpy bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} must be a bool")
    return bool(value)


# ----------------------------------------------------------------------------- TFSConfig


def check_config_static(fields: dict) -> dict:
    """Algorithm §10's checks of `TFSConfig`'s static fields; returns them normalised (Python
    floats, ints, tuples and bools)."""
    out = {"retain_ratio": check_retain_ratio(fields["retain_ratio"])}
    for name, lowest in (("num_clusters", 1), ("kmeans_iters", 0), ("motion_radius", 0)):
        out[name] = check_count(name, fields[name], lowest)
    for name in ("motion_window", "center_radius", "surround_radius"):
        out[name] = check_radius3(name, fields[name])
    if any(c > s for c, s in zip(out["center_radius"], out["surround_radius"])):
        raise ValueError(
            f"center_radius={out['center_radius']} must not exceed "
            f"surround_radius={out['surround_radius']} on any axis"
        )
    for name in ("coalesce", "refill"):
        out[name] = check_flag(name, fields[name])
    if out["refill"] and not out["coalesce"]:
        raise ValueError("refill=True needs coalesce=True (it moves coalescing before the budget)")
    return out


def check_config_traced(name: str, value) -> np.ndarray:
    """Algorithm §10's checks of a concrete traced field of `TFSConfig`; returns float32 numpy."""
    shape = (3,) if name == "factor_weights" else ()
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name}={value!r} must have shape {shape}, got {arr.shape}")
    if not is_real_dtype(arr.dtype):
        raise ValueError(f"{name}={value!r} must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}={value!r} must be finite (in float32)")
    if name == "factor_weights" and (np.any(arr < 0) or not np.any(arr > 0)):
        raise ValueError(f"{name}={value!r} must be non-negative and not all zero")
    if name == "focal_temperature" and arr < 1e-6:
        raise ValueError(f"{name}={value!r} must be >= 1e-6 (smaller values overflow the softmax)")
    if name == "rel_quantile" and not 0 <= arr <= 1:
        raise ValueError(f"{name}={value!r} must be in [0, 1]")
    return arr


# ----------------------------------------------------------------------------- serving (host-side prompt bookkeeping)


def check_host_array(name: str, value) -> np.ndarray:
    """A host numpy array from numpy, a list or a concrete jax array; never a tracer."""
    if isinstance(value, jax.core.Tracer):
        raise ValueError(
            f"{name} must be a concrete host array, not a traced value: positions are "
            f"computed on the host before the LM runs (call this outside jit)"
        )
    return np.asarray(value)


def check_prompt_ids(input_ids) -> np.ndarray:
    """One prompt's token ids: a non-empty 1-D integer host array."""
    ids = check_host_array("input_ids", input_ids)
    if ids.ndim != 1:
        raise ValueError(
            f"input_ids must be 1-D (one prompt; loop over a batch), "
            f"got rank {ids.ndim}: {ids.shape}"
        )
    if ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"input_ids must be non-empty integer token ids, got {ids.dtype} {ids.shape}"
        )
    return ids


def check_grid_thw(name: str, grid, merge: int) -> np.ndarray:
    """`(n, 3)` positive integer `(t, h, w)` rows with `h`, `w` multiples of `merge`."""
    if grid is None:
        return np.zeros((0, 3), np.int64)
    arr = check_host_array(name, grid)
    if arr.size == 0:
        return np.zeros((0, 3), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), rows (t, h, w), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if np.any(arr <= 0):
        raise ValueError(f"{name} sizes must be positive, got {arr.tolist()}")
    if np.any(arr[:, 1:] % merge):
        raise ValueError(
            f"{name} h and w must be multiples of spatial_merge_size={merge}, got {arr.tolist()}"
        )
    return arr.astype(np.int64)


def check_seconds_per_grid(second_per_grid_ts, videos: int) -> list:
    """`second_per_grid_ts` as one float32 (or `None`) per video row."""
    if second_per_grid_ts is None:
        return [None] * videos
    arr = check_host_array("second_per_grid_ts", second_per_grid_ts)
    if arr.ndim != 1 or len(arr) != videos:
        raise ValueError(
            f"second_per_grid_ts must have shape ({videos},), one per video_grid_thw row, "
            f"got {arr.shape}"
        )
    if not is_real_dtype(arr.dtype):
        raise ValueError(f"second_per_grid_ts must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"second_per_grid_ts must be finite and non-negative, got {arr.tolist()}")
    return list(arr)


def check_image_grid(image_grid_thw, image_token_id, merge: int) -> np.ndarray | None:
    """Image rows `(1, h, w)`, given together with their placeholder id (or neither)."""
    if (image_grid_thw is None) != (image_token_id is None):
        raise ValueError("image_grid_thw and image_token_id must be given together (or neither)")
    if image_grid_thw is None:
        return None
    images = check_grid_thw("image_grid_thw", image_grid_thw, merge)
    if np.any(images[:, 0] != 1):
        raise ValueError(f"image_grid_thw rows must have t = 1, got {images.tolist()}")
    return images


def check_rope_options(convention, split_frames, tokens_per_second) -> None:
    """A known M-RoPE convention, a bool `split_frames`, a positive finite `tokens_per_second`."""
    if convention not in ROPE_CONVENTIONS:
        raise ValueError(f"convention={convention!r} must be one of {ROPE_CONVENTIONS}")
    check_flag("split_frames", split_frames)
    tps = tokens_per_second
    if not is_real(tps) or not 0 < tps < np.inf:
        raise ValueError(f"tokens_per_second={tps!r} must be a positive finite number")


def check_placeholder_ids(video_token_id, image_token_id) -> None:
    """Integer placeholder ids; the image one, if any, differs from the video one."""
    check_int("video_token_id", video_token_id)
    if image_token_id is None:
        return
    check_int("image_token_id", image_token_id)
    if image_token_id == video_token_id:
        raise ValueError(
            f"image_token_id and video_token_id must differ, both are {video_token_id}"
        )


def check_int(name: str, value) -> int:
    """A Python or numpy integer, not a bool."""
    if not is_int(value):
        raise ValueError(f"{name}={value!r} must be an int")
    return int(value)
