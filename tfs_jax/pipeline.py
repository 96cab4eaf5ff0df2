"""`tfs_prune`: the TFS-Pruner as the composition of its public stages (algorithm §0-11).

    boundary        valid_and_scale             which tokens take part, overflow scale
    S_M             motion_vectors, dynamic_saliency               algorithm §1, Eq. 1
    S_R             regional_saliency                              algorithm §2, Eqs. 2-4
    S_F             focal_saliency                                 algorithm §3, Eq. 5
    segments        segment_frames                                 algorithm §4, Eqs. 6-7
    clusters        clustering_features, segmented_kmeans          algorithm §5-6
    selection       select_tokens                                  algorithm §7-9
    result          decide, plus the diagnostics                   algorithm §11

Swap a stage by composing these functions yourself: each is pure and public. The three
stages that read tokens each start with `valid_and_scale`; `tfs_prune` runs it once and
calls their private cores (`tfs_jax.saliency._*_core`) on its result, which gives the
public functions' results bit for bit (tests/test_pipeline.py composes them by hand).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from tfs_jax.checks import check_impl
from tfs_jax.checks import check_key
from tfs_jax.checks import check_tokens
from tfs_jax.clustering import clustering_features
from tfs_jax.clustering import segmented_kmeans
from tfs_jax.config import TFSConfig
from tfs_jax.decision import Decision
from tfs_jax.decision import decide
from tfs_jax.saliency import dynamic_saliency
from tfs_jax.saliency import _focal_saliency_core
from tfs_jax.saliency import _motion_vectors_core
from tfs_jax.saliency import _regional_saliency_core
from tfs_jax.segments import segment_frames
from tfs_jax.selection import select_tokens
from tfs_jax.tokens import as_typed_key
from tfs_jax.tokens import prepare_numpy_float64
from tfs_jax.tokens import valid_and_scale


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "indices", "slot_valid", "keep_mask", "num_kept", "saliency",
        "motion", "segment", "cluster", "has_candidate",
    ],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class TFSResult(Decision):
    """What `tfs_prune` decided (a `Decision` over the `(T, H, W)` grid) and why (algorithm §11).

    Attributes (beyond `Decision`'s `indices`, `slot_valid`, `keep_mask`, `num_kept`):
      saliency: `(T, H, W, 3) float32` `S_M, S_R, S_F` after blending, before min-max.
      motion: `(T, H, W, 2) int32` motion vector `(dh, dw)`.
      segment: `(T,) int32` segment id per frame, -1 for frames without a valid token.
      cluster: `(T, H, W) int32` cluster label within the segment, -1 for padding.
      has_candidate: `(T, H, W) bool` the token had a valid motion candidate.
    """

    saliency: Float[Array, "t h w 3"]
    motion: Int[Array, "t h w 2"]
    segment: Int[Array, "t"]
    cluster: Int[Array, "t h w"]
    has_candidate: Bool[Array, "t h w"]


def tfs_prune(
    tokens: Shaped[Array, "t h w d"],
    config: TFSConfig | None = None,
    *,
    valid: Bool[Array, "t h w"] | None = None,
    key: Array | None = None,
    impl: str = "auto",
) -> TFSResult:
    """Prune a video's tokens with the TFS-Pruner.

    Args:
      tokens: `(T, H, W, D)` float16/bfloat16/float32/float64 tokens (math in float32).
      config: a `TFSConfig` (default `TFSConfig()`).
      valid: `(T, H, W)` bool mask of real tokens (default all); padding takes no part.
      key: PRNG key of the k-means++ seeding (default `jax.random.key(0)`).
      impl: neighbourhood-op implementation (static): "auto", "xla", "pallas",
        "interpret" (`tfs_jax.kernels.dispatch`).

    Returns:
      A `TFSResult` with `K = static_budget(T * H * W, retain_ratio)` index slots.

    Bad shapes, dtypes, keys or `impl` raise `ValueError` before anything is traced. Under
    `jax.jit`, pass `impl` as static: `jax.jit(tfs_prune, static_argnames="impl")`.
    """
    config = TFSConfig() if config is None else config
    if not isinstance(config, TFSConfig):
        raise ValueError(f"config must be a TFSConfig, got {type(config).__name__}")
    check_tokens(tokens, valid)
    check_key(key)
    check_impl(impl)
    if isinstance(tokens, np.ndarray):
        tokens, valid = prepare_numpy_float64(tokens, valid)
    # One compiled program whatever the caller passes: half precision upcast here (exact),
    # an explicit all-true mask for None, a typed key for a legacy one.
    if tokens.dtype in (jnp.float16, jnp.bfloat16):
        tokens = jnp.asarray(tokens).astype(jnp.float32)
    valid = jnp.ones(tokens.shape[:3], bool) if valid is None else valid
    return _tfs_prune(tokens, valid, config, as_typed_key(key), impl=impl)


@functools.partial(jax.jit, static_argnames="impl")
def _tfs_prune(tokens, valid, config: TFSConfig, key, *, impl: str) -> TFSResult:
    valid, scale = valid_and_scale(tokens, valid)
    motion, has_candidate = _motion_vectors_core(
        tokens, valid, scale, radius=config.motion_radius, stay_bias=config.stay_bias, impl=impl
    )
    s_m = dynamic_saliency(motion, valid, window=config.motion_window, radius=config.motion_radius)
    s_r = _regional_saliency_core(
        tokens, valid, scale, center_radius=config.center_radius,
        surround_radius=config.surround_radius, impl=impl,
    )
    s_f = _focal_saliency_core(tokens, valid, scale, temperature=config.focal_temperature,
                               impl=impl)
    saliency = jnp.stack([s_m, s_r, s_f], axis=-1)
    segment = segment_frames(
        s_m, valid, abs_threshold=config.abs_threshold, rel_quantile=config.rel_quantile
    )
    features = clustering_features(saliency, segment, valid, factor_weights=config.factor_weights)
    cluster = segmented_kmeans(
        features, segment, valid, key, num_clusters=config.num_clusters, iters=config.kmeans_iters
    )
    keep = select_tokens(
        saliency, features, segment, cluster, valid, motion, has_candidate,
        retain_ratio=config.retain_ratio, num_clusters=config.num_clusters,
        coalesce=config.coalesce, refill=config.refill,
    )
    return TFSResult(
        **vars(decide(keep, config.retain_ratio)),
        saliency=saliency,
        motion=motion,
        segment=segment,
        cluster=cluster,
        has_candidate=has_candidate,
    )
