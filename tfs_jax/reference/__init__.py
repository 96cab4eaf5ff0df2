"""An independent float64/float32 numpy reference of the algorithm, and real tokens to run it on.

`tfs_jax.reference.spec` is written from the algorithm document, not from the library: it
imports numpy only (never another `tfs_jax` module) and loops over tokens in plain Python,
for clarity over speed (tiny clips only). The test suite holds `tfs_prune` against it stage
by stage (`tests/test_spec_reference.py`), and the GPU acceptance run
(`experiments/gpu_acceptance.py`) holds the kernels against it.

`REAL_TOKENS` (`dinov2_tokens.npz`, package data): DINOv2-S/14 tokens of frames of two
bundled clips, float16, with a `meta` JSON string saying how they were made
(`python -m experiments.gpu_acceptance --write-real-tokens` regenerates them).
"""

from __future__ import annotations

import pathlib

REAL_TOKENS = pathlib.Path(__file__).resolve().parent / "dinov2_tokens.npz"

__all__ = ["REAL_TOKENS"]
