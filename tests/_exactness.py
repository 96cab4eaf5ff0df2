"""Run by test_exactness.py in a subprocess at XLA's default optimisation level (the suite
runs at level 0, where fusion and vectorisation differ from what users get).

Checks algorithm §10's exactness claims bit for bit and exits non-zero, naming the field, on the
first difference:
  1. `jax.jit(tfs_prune)` against `tfs_prune` (which jits internally);
  2. frames of padding (holding NaN) appended: every field on the real frames unchanged,
     at 8x6x7x16 and at DINOv2-S's width, 8x12x12x384.

What this cannot show: these checks also pass with `--xla_cpu_enable_fast_math=true` (two
compiled programs reassociate alike), so they do not detect fast-math; and op by op
(`jax.disable_jit()`) is not bit-equal to a compiled program (test_exactness.py holds it to
a tolerance instead).
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import tfs_jax

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
    assert "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""), os.environ["XLA_FLAGS"]
    cfg = tfs_jax.TFSConfig(num_clusters=6)
    x = video((8, 6, 7, 16))
    plain = tfs_jax.tfs_prune(x, cfg)
    jitted = jax.jit(tfs_jax.tfs_prune)(jnp.asarray(x), cfg)
    for field in vars(plain):
        same(f"jit vs plain: {field}", getattr(jitted, field), getattr(plain, field))
    kept = [padding_is_transparent(x, cfg, plain)]
    # DINOv2-S's width: long dot products over D, where a reassociated sum would show.
    big = video((8, 12, 12, 384), seed=2)
    kept.append(padding_is_transparent(big, cfg, tfs_jax.tfs_prune(big, cfg)))
    print("ok: kept " + ", ".join(f"{n} of {m}" for n, m in kept))


def padding_is_transparent(x, cfg, plain):
    """Three frames of NaN padding appended: every field on the real frames has the same
    bits as `plain`, the unpadded result. Returns (kept, tokens)."""
    t = x.shape[0]
    pad = np.full((3,) + x.shape[1:], np.nan, np.float32)
    valid = np.ones((t + 3,) + x.shape[1:3], bool)
    valid[t:] = False
    padded = tfs_jax.tfs_prune(np.concatenate([x, pad]), cfg, valid=valid)
    at = f"padded vs unpadded {'x'.join(map(str, x.shape))}"
    for field in FIELDS:
        same(f"{at}: {field}", getattr(padded, field)[:t], getattr(plain, field))
    n = int(plain.num_kept)
    same(f"{at}: num_kept", padded.num_kept, plain.num_kept)
    same(f"{at}: indices", padded.indices[:n], plain.indices[:n])
    return n, x.size // x.shape[-1]


if __name__ == "__main__":
    main()
