"""Run by test_exactness.py in a subprocess at XLA's default optimisation level (the suite
runs at level 0, where fusion and vectorisation differ from what users get).

Checks SPEC 10's exactness claims bit for bit and exits non-zero, naming the field, on the
first difference:
  1. `jax.jit(tfs_prune)` against `tfs_prune` (which jits internally);
  2. frames of padding (holding NaN) appended: every field on the real frames unchanged;
  3. under `jax.disable_jit()` at a tiny shape: the same kept set, motion and segments
     (saliency bits may differ where XLA fuses, so they are held to 1e-5 only).
"""

import os
import sys

assert "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""), os.environ["XLA_FLAGS"]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import tfs_jax  # noqa: E402

FIELDS = ("saliency", "motion", "has_candidate", "segment", "cluster", "keep_mask")


def video(shape, seed=0):
    """Background with noise and a block that moves one token right per frame."""
    t, h, w, d = shape
    rng = np.random.default_rng(seed)
    x = np.repeat(rng.normal(size=(1, h, w, d)), t, axis=0) + 0.05 * rng.normal(size=shape)
    block = 3 * rng.normal(size=(2, 2, d))
    for f in range(t):
        x[f, 1:3, f % (w - 2):f % (w - 2) + 2] = block
    return x.astype(np.float32)


def same(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.array_equal(got, want):
        diff = np.argwhere(got != want)[:3].tolist() if got.shape == want.shape else "shape"
        sys.exit(f"{name}: differs at {diff}")


def main():
    cfg = tfs_jax.TFSConfig(num_clusters=6)
    x = video((8, 6, 7, 16))
    plain = tfs_jax.tfs_prune(x, cfg)
    jitted = jax.jit(tfs_jax.tfs_prune)(jnp.asarray(x), cfg)
    for field in vars(plain):
        same(f"jit vs plain: {field}", getattr(jitted, field), getattr(plain, field))

    pad = np.full((3,) + x.shape[1:], np.nan, np.float32)
    valid = np.ones((11,) + x.shape[1:3], bool)
    valid[8:] = False
    padded = tfs_jax.tfs_prune(np.concatenate([x, pad]), cfg, valid=valid)
    for field in FIELDS:
        same(f"padded vs unpadded: {field}", getattr(padded, field)[:8], getattr(plain, field))
    n = int(plain.num_kept)
    same("padded vs unpadded: num_kept", padded.num_kept, plain.num_kept)
    same("padded vs unpadded: indices", padded.indices[:n], plain.indices[:n])

    small_cfg = tfs_jax.TFSConfig(num_clusters=3, kmeans_iters=3)
    tiny = video((3, 4, 5, 8), seed=1)
    compiled = tfs_jax.tfs_prune(tiny, small_cfg)
    with jax.disable_jit():
        eager = tfs_jax.tfs_prune(tiny, small_cfg)
    for field in ("keep_mask", "motion", "segment", "num_kept"):
        same(f"disable_jit: {field}", getattr(eager, field), getattr(compiled, field))
    np.testing.assert_allclose(eager.saliency, compiled.saliency, rtol=0, atol=1e-5)
    print(f"ok: kept {n} of {x.size // x.shape[-1]}, disable_jit kept {int(eager.num_kept)}")


if __name__ == "__main__":
    main()
