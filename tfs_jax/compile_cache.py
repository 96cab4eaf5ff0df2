"""The persistent XLA compilation cache: one place that knows where it lives.

The first call of `tfs_prune` for a shape and static config pays the XLA compile (seconds
on a CPU). With the cache on, later processes load the compiled program from disk instead.
The command line turns it on for every run; the experiments' harness does too.
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "TFS_JAX_CACHE_DIR"
MIN_COMPILE_SECONDS = 0.5  # programs that compile faster than this are not worth a file


def default_cache_dir() -> str:
    """`$TFS_JAX_CACHE_DIR` if set (an empty string: no cache), else
    `$XDG_CACHE_HOME/tfs-jax/xla` (`~/.cache/tfs-jax/xla`)."""
    if ENV_VAR in os.environ:
        return os.environ[ENV_VAR]
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    return str(base / "tfs-jax" / "xla")


def enable_compile_cache(path: str | os.PathLike | None = None) -> str | None:
    """Keep compiled programs in a folder on disk, for this process and later ones.

    Call it once, before the first compile. A cache folder that JAX already has (set by a
    test suite's conftest, say) is left as it is.

    Args:
        path: the folder; None: `default_cache_dir()`; "" switches the cache off.
    Returns:
        the folder in use, or None when there is none.
    """
    import jax

    chosen = getattr(jax.config, "jax_compilation_cache_dir", None)
    if chosen:
        return chosen
    path = default_cache_dir() if path is None else os.fspath(path)
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
