"""SPEC 10's exactness at the optimisation level users get (tests/_exactness.py).

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


def test_jit_padding_and_disable_jit_agree_at_the_default_optimisation_level():
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
