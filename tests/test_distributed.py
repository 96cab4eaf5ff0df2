"""A batch sharded over 8 CPU devices gives the single-device results (tfs_jax/distributed.py).

The multi-device run happens in a subprocess: `--xla_force_host_platform_device_count=8`
must be in XLA_FLAGS before JAX starts, and this process already started it.
"""

import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import tfs_jax
from tfs_jax.distributed import prune_batch

sys.path.insert(0, os.path.dirname(__file__))
from _processes import free_port, python, run_all  # noqa: E402

CFG = tfs_jax.TFSConfig(num_clusters=3, kmeans_iters=3)


def batch_videos(batch=5, shape=(5, 4, 5, 6)):
    """Five videos of different lengths padded in time (NaN in the padding)."""
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(batch,) + shape).astype(np.float32)
    valid = np.ones((batch,) + shape[:3], bool)
    for b in range(batch):
        valid[b, shape[0] - b % 3:] = False
    tokens[~valid] = np.nan
    return tokens, valid


def test_sharded_batch_over_eight_devices_matches_single_device(tmp_path):
    out = tmp_path / "sharded.npz"
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    script = pathlib.Path(__file__).with_name("_sharded_batch.py")
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = np.load(out)
    assert int(sharded["num_devices"]) == 8 and int(sharded["result_devices"]) == 8
    tokens, valid = batch_videos()
    for b in range(len(tokens)):
        single = tfs_jax.tfs_prune(tokens[b], CFG, valid=valid[b], key=jax.random.fold_in(jax.random.key(1), b))
        for field, value in vars(single).items():
            np.testing.assert_array_equal(sharded[field][b], np.asarray(value), err_msg=f"video {b}: {field}")


def test_prune_batch_on_one_device_tops_up_nothing_and_checks_input():
    tokens, valid = batch_videos(batch=2)
    result = prune_batch(tokens, CFG, valid=valid)
    single = tfs_jax.tfs_prune(tokens[1], CFG, valid=valid[1], key=jax.random.fold_in(jax.random.key(0), 1))
    np.testing.assert_array_equal(result.indices[1], single.indices)
    with pytest.raises(ValueError, match="B, T, H, W, D"):
        prune_batch(tokens[0], CFG)
    with pytest.raises(ValueError, match="valid"):
        prune_batch(tokens, CFG, valid=valid[:, :3])


def test_prune_batch_takes_a_key_of_any_impl():
    """An rbg key (as `tfs_prune` takes) keeps its impl through the sharded call (it used to
    be rewrapped as a default-impl key: TypeError): video `b` gets `fold_in(key, b)` of that
    impl, exactly as `tfs_prune` vmapped over those keys. (Not as `tfs_prune` per video:
    JAX batches rbg's `rng_bit_generator` by drawing the whole batch from its first key.)"""
    tokens, valid = batch_videos(batch=3)
    key = jax.random.key(1, impl="rbg")
    result = prune_batch(tokens, CFG, valid=valid, key=key)
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(np.arange(len(tokens)))
    assert jax.random.key_impl(keys) == jax.random.key_impl(key)
    batched = jax.jit(jax.vmap(lambda x, m, k: tfs_jax.tfs_prune(x, CFG, valid=m, key=k)))(tokens, valid, keys)
    for field, value in vars(batched).items():
        np.testing.assert_array_equal(np.asarray(getattr(result, field)), np.asarray(value), err_msg=field)


def test_two_processes_share_one_mesh_and_match_a_single_process_run(tmp_path):
    """Two processes joined by jax.distributed on loopback, each passing its own videos:
    video b of process p is global video 3p + b, with key fold_in(key, 3p + b), so every
    kept set equals the single-process run over the whole batch bit for bit."""
    port = str(free_port())
    script = str(pathlib.Path(__file__).with_name("_multihost.py"))
    run_all([python(script, str(p), port, str(tmp_path / f"{p}.npz")) for p in range(2)])
    tokens, valid = batch_videos(batch=6)
    for p in range(2):
        local = np.load(tmp_path / f"{p}.npz")
        for b in range(3):
            g = 3 * p + b
            single = tfs_jax.tfs_prune(tokens[g], CFG, valid=valid[g], key=jax.random.fold_in(jax.random.key(1), g))
            for field, value in vars(single).items():
                np.testing.assert_array_equal(local[field][b], np.asarray(value), err_msg=f"video {g}: {field}")
