"""tfs-jax: the TFS-Pruner (Tri-Factor Saliency video token pruning) as pure JAX.

Quick start:
    result = jax.jit(tfs_jax.tfs_prune)(tokens, tfs_jax.TFSConfig(retain_ratio=0.25))
    kept, positions, valid = tfs_jax.gather_kept(tokens, result)

The stages `tfs_prune` composes, the algorithm §0 primitives and the budget are importable from
here. The other subpackages load on first use (`tfs_jax.baselines`, `tfs_jax.vlm`, ...),
so `import tfs_jax` costs jax, numpy, jaxtyping and the stages' own `tfs_jax.kernels`
only: flax, onnx, PyAV and matplotlib load with the subpackage that needs them.

Shape glossary (jaxtyping strings; one meaning per name, the same in every module):
  t, h, w  frames and the token grid of one frame (a video is `(T, H, W)` tokens)
  d        feature dimension of a token (what the encoder gives and the pruner reads)
  n        flattened tokens, `T * H * W` (in `serving`: a prompt's video placeholders)
  p        tokens of one frame, `H * W`
  k        kept slots: `K = static_budget(n, retain_ratio)` (a `Decision`'s `indices`)
  s        segment slots (at most `T`)
  c        clusters per segment (`num_clusters`)
  b        videos of a batch
  l        positions of the language model's sequence (`serving`: of a prompt)
  y, x     pixel rows and columns of a frame
Longer names are local and say what they are (`hidden`, `head_dim`, `vocab`, `queries`).
"""

import importlib

from tfs_jax.budget import retain_fraction
from tfs_jax.budget import static_budget
from tfs_jax.budget import video_budget
from tfs_jax.checks import check_finite
from tfs_jax.clustering import assign_clusters
from tfs_jax.clustering import clustering_features
from tfs_jax.clustering import kmeans_plus_plus
from tfs_jax.clustering import segmented_kmeans
from tfs_jax.clustering import update_centroids
from tfs_jax.compile_cache import enable_compile_cache
from tfs_jax.config import TFSConfig
from tfs_jax.decision import Decision
from tfs_jax.decision import decide
from tfs_jax.decision import gather_kept
from tfs_jax.pipeline import TFSResult
from tfs_jax.pipeline import tfs_prune
from tfs_jax.primitives import cosine
from tfs_jax.primitives import masked_median
from tfs_jax.primitives import masked_minmax
from tfs_jax.primitives import masked_quantile
from tfs_jax.primitives import share
from tfs_jax.primitives import split_quota
from tfs_jax.saliency import confidence_blend
from tfs_jax.saliency import dynamic_saliency
from tfs_jax.saliency import focal_saliency
from tfs_jax.saliency import motion_vectors
from tfs_jax.saliency import regional_saliency
from tfs_jax.segments import pace_signal
from tfs_jax.segments import segment_frames
from tfs_jax.segments import segment_starts
from tfs_jax.selection import select_tokens
from tfs_jax.selection import static_tokens
from tfs_jax.selection import stratified_select
from tfs_jax.selection import stratum_quotas
from tfs_jax.selection import token_strata
from tfs_jax.tokens import prepare_tokens
from tfs_jax.tokens import valid_and_scale

__version__ = "0.1.0"

__all__ = [
    # the pruner and its result
    "TFSConfig",
    "tfs_prune",
    "TFSResult",
    "Decision",
    "decide",
    "gather_kept",
    # stages, in pipeline order
    "valid_and_scale",
    "motion_vectors",
    "dynamic_saliency",
    "regional_saliency",
    "focal_saliency",
    "confidence_blend",
    "pace_signal",
    "segment_starts",
    "segment_frames",
    "clustering_features",
    "kmeans_plus_plus",
    "assign_clusters",
    "update_centroids",
    "segmented_kmeans",
    "token_strata",
    "stratum_quotas",
    "stratified_select",
    "static_tokens",
    "select_tokens",
    # Algorithm §0 primitives and algorithm §7 budgets
    "cosine",
    "masked_quantile",
    "masked_median",
    "masked_minmax",
    "share",
    "split_quota",
    "retain_fraction",
    "static_budget",
    "video_budget",
    # the token boundary
    "check_finite",
    "prepare_tokens",
    # compiled programs kept on disk
    "enable_compile_cache",
]

# Reachable as attributes, loaded on first access (PEP 562) so that the core import stays
# light; `kernels` is already loaded by the stages and is listed so that it is reachable.
SUBPACKAGES = (
    "app",
    "baselines",
    "cli",
    "distributed",
    "encoders",
    "figures",
    "kernels",
    "models",
    "preflight",
    "serving",
    "video",
    "vlm",
)


def __getattr__(name: str):
    if name in SUBPACKAGES:
        return importlib.import_module(f"tfs_jax.{name}")
    raise AttributeError(f"module 'tfs_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBPACKAGES))
