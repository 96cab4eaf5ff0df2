"""tfs-jax: the TFS-Pruner (Tri-Factor Saliency video token pruning) as pure JAX.

Shape glossary (jaxtyping strings used throughout):
  t, h, w  frames and the token grid of one frame (the video is `(T, H, W)` tokens)
  d        token feature dimension
  n        flattened tokens, `T * H * W`
  k        kept-token slots `K = budget(T * H * W)` (in `PruneResult`), or the number of
           clusters per segment (in clustering code)
  s        segment slots: at most `T`

Quick start:
    result = jax.jit(tfs_jax.tfs_prune)(tokens, tfs_jax.TFSConfig(retain_ratio=0.25))
    kept, positions, valid = tfs_jax.gather_kept(tokens, result)
"""

from tfs_jax.budget import static_budget
from tfs_jax.budget import video_budget
from tfs_jax.clustering import assign_clusters
from tfs_jax.clustering import clustering_features
from tfs_jax.clustering import kmeans_plus_plus
from tfs_jax.clustering import segmented_kmeans
from tfs_jax.clustering import update_centroids
from tfs_jax.config import TFSConfig
from tfs_jax.config import retain_fraction
from tfs_jax.pipeline import PruneResult
from tfs_jax.pipeline import gather_kept
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
from tfs_jax.saliency import regional_contrast
from tfs_jax.saliency import regional_saliency
from tfs_jax.segments import pace_signal
from tfs_jax.segments import segment_frames
from tfs_jax.segments import segment_starts
from tfs_jax.selection import rank_in_group
from tfs_jax.selection import static_tokens
from tfs_jax.selection import stratified_select
from tfs_jax.selection import stratum_quotas
from tfs_jax.selection import token_strata
from tfs_jax.tokens import check_finite
from tfs_jax.tokens import prepare_tokens

__version__ = "0.1.0"
