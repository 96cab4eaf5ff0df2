"""Algorithm §10's exactness at the optimisation level users get (tests/_exactness.py).

The suite compiles at XLA's CPU optimisation level 0 (conftest.py); fusion and
vectorisation, which could change summation order and so break "the same bits with or
without jax.jit and with or without frames of padding", happen at the default level. So
the check runs in a subprocess with that flag removed.
"""

import os
import pathlib
import subprocess
import sys

import jax


def test_jit_and_padding_agree_at_the_default_optimisation_level():
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_backend_optimization_level" not in f]
    env["XLA_FLAGS"] = " ".join(flags)
    # The suite's persistent compilation cache (keys include the flags, so nothing mixes).
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    script = pathlib.Path(__file__).with_name("_exactness.py")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.startswith("ok: kept ")


def test_disable_jit_keeps_the_same_tokens():
    """Op by op, without XLA fusing anything (so saliency bits may differ), the decisions
    are the compiled program's: kept set, motion, segments."""
    import numpy as np

    import tfs_jax

    sys.path.insert(0, os.path.dirname(__file__))
    from _exactness import video

    cfg = tfs_jax.TFSConfig(num_clusters=3, kmeans_iters=3)
    tiny = video((3, 4, 5, 8), seed=1)
    compiled = tfs_jax.tfs_prune(tiny, cfg)
    with jax.disable_jit():
        eager = tfs_jax.tfs_prune(tiny, cfg)
    for field in ("keep_mask", "motion", "segment", "num_kept"):
        np.testing.assert_array_equal(getattr(eager, field), getattr(compiled, field), err_msg=field)
    np.testing.assert_allclose(eager.saliency, compiled.saliency, rtol=0, atol=1e-5)
    assert 0 < int(compiled.num_kept) < 60
