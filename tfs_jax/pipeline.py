"""`tfs_prune`: the whole TFS-Pruner as one pure function (SPEC 0-11), and `gather_kept`."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Shaped

from tfs_jax.budget import static_budget
from tfs_jax.budget import video_budget
from tfs_jax.clustering import clustering_features
from tfs_jax.clustering import segmented_kmeans
from tfs_jax.config import TFSConfig
from tfs_jax.kernels import check_impl
from tfs_jax.kernels import focal_reconstruction
from tfs_jax.kernels import motion_match
from tfs_jax.kernels import valid_and_scale
from tfs_jax.kernels import window_contrast
from tfs_jax.saliency import confidence_blend
from tfs_jax.saliency import dynamic_saliency
from tfs_jax.segments import segment_frames
from tfs_jax.selection import static_tokens
from tfs_jax.selection import stratified_select
from tfs_jax.tokens import check_tokens
from tfs_jax.tokens import prepare_numpy_float64


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "indices", "valid", "keep_mask", "num_kept", "saliency",
        "motion", "segment", "cluster", "has_candidate",
    ],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class PruneResult:
    """What `tfs_prune` decided, with static shapes (SPEC 11).

    Attributes:
      indices: `(K,) int32` kept flat indices `(t * H + h) * W + w`, ascending, then `T*H*W`.
      valid: `(K,) bool` which entries of `indices` are real.
      keep_mask: `(T, H, W) bool` the same set as a mask.
      num_kept: `() int32` number of real entries.
      saliency: `(T, H, W, 3) float32` `S_M, S_R, S_F` after blending, before min-max.
      motion: `(T, H, W, 2) int32` motion vector `(dh, dw)`.
      segment: `(T,) int32` segment id per frame, -1 for frames without a valid token.
      cluster: `(T, H, W) int32` cluster label within the segment, -1 for padding.
      has_candidate: `(T, H, W) bool` the token had a valid motion candidate.
    """

    indices: Int[Array, "k"]
    valid: Bool[Array, "k"]
    keep_mask: Bool[Array, "t h w"]
    num_kept: Int[Array, ""]
    saliency: Float[Array, "t h w 3"]
    motion: Int[Array, "t h w 2"]
    segment: Int[Array, "t"]
    cluster: Int[Array, "t h w"]
    has_candidate: Bool[Array, "t h w"]


def check_key(key) -> None:
    """Raise `ValueError` unless `key` is None, a typed PRNG key or a legacy `uint32[2]` key."""
    if key is None:
        return
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is None:
        raise ValueError(f"key must be a PRNG key array, got {type(key).__name__}")
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(f"key must be a single PRNG key, got shape {shape}")
    elif tuple(shape) != (2,) or np.dtype(dtype) != np.uint32:
        raise ValueError(f"key must be a typed key or a uint32[2] legacy key, got {dtype}{list(shape)}")


def tfs_prune(
    tokens: Shaped[Array, "t h w d"],
    config: TFSConfig | None = None,
    *,
    valid: Bool[Array, "t h w"] | None = None,
    key: Array | None = None,
    impl: str = "auto",
) -> PruneResult:
    """Prune a video's tokens with the TFS-Pruner.

    Args:
      tokens: `(T, H, W, D)` float16/bfloat16/float32/float64 tokens (math in float32).
      config: a `TFSConfig` (default `TFSConfig()`).
      valid: `(T, H, W)` bool mask of real tokens (default all); padding takes no part.
      key: PRNG key of the k-means++ seeding (default `jax.random.key(0)`).
      impl: neighbourhood-op implementation (static): "auto", "xla", "pallas",
        "interpret" (`tfs_jax.kernels.dispatch`).

    Returns:
      A `PruneResult` with `K = budget(T * H * W)` index slots.

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


def as_typed_key(key: Array | None) -> Array:
    """A typed PRNG key: `jax.random.key(0)` for None, legacy `uint32[2]` keys wrapped."""
    if key is None:
        return jax.random.key(0)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))


@functools.partial(jax.jit, static_argnames="impl")
def _tfs_prune(tokens, valid, config: TFSConfig, key, *, impl: str) -> PruneResult:
    # The ops read the raw tokens and apply prepare_tokens' mask and overflow scale on the
    # fly: a prepared copy of the video would cost more than all of them.
    valid, scale = valid_and_scale(tokens, valid)
    motion, has_candidate = motion_match(
        tokens, valid, config.stay_bias, radius=config.motion_radius, impl=impl, scale=scale
    )
    s_m = dynamic_saliency(
        motion, valid, window=config.motion_window, radius=config.motion_radius
    )
    s_r = confidence_blend(
        *window_contrast(
            tokens, valid, center_radius=config.center_radius,
            surround_radius=config.surround_radius, impl=impl, scale=scale,
        ),
        valid,
    )
    s_f = confidence_blend(
        *focal_reconstruction(tokens, valid, config.focal_temperature, impl=impl, scale=scale),
        valid,
    )
    saliency = jnp.stack([s_m, s_r, s_f], axis=-1)
    segment = segment_frames(
        s_m, valid, abs_threshold=config.abs_threshold, rel_quantile=config.rel_quantile
    )
    features = clustering_features(saliency, segment, valid, factor_weights=config.factor_weights)
    cluster = segmented_kmeans(
        features, segment, valid, key, num_clusters=config.num_clusters, iters=config.kmeans_iters
    )
    keep = _select(saliency, features, segment, cluster, valid, motion, has_candidate, config)
    indices, slot_valid, num_kept = kept_slots(keep, config.retain_ratio)
    return PruneResult(
        indices=indices,
        valid=slot_valid,
        keep_mask=keep,
        num_kept=num_kept,
        saliency=saliency,
        motion=motion,
        segment=segment,
        cluster=cluster,
        has_candidate=has_candidate,
    )


def kept_slots(
    keep: Bool[Array, "t h w"], retain_ratio: float
) -> tuple[Int[Array, "k"], Bool[Array, "k"], Int[Array, ""]]:
    """A keep mask as SPEC 11's static slots: `(indices, valid, num_kept)`, the kept flat
    indices ascending then `T*H*W`, in `K = static_budget(T*H*W, retain_ratio)` slots."""
    num_tokens = keep.size
    slots = static_budget(num_tokens, retain_ratio)
    indices = jnp.nonzero(keep.reshape(-1), size=slots, fill_value=num_tokens)[0].astype(jnp.int32)
    num_kept = jnp.sum(keep, dtype=jnp.int32)
    return indices, jnp.arange(slots) < num_kept, num_kept


def _select(saliency, features, segment, cluster, valid, motion, has_candidate, config):
    """Budget, stratified top-K and coalescing (SPEC 7-9); refill moves coalescing first."""
    k_v = video_budget(jnp.sum(valid, dtype=jnp.int32), config.retain_ratio)
    static = static_tokens(motion, has_candidate) if config.coalesce else jnp.zeros_like(valid)
    eligible = valid & ~static if config.refill else valid
    quota = jnp.minimum(k_v, jnp.sum(eligible, dtype=jnp.int32))
    keep = stratified_select(
        saliency, features, segment, cluster, eligible, quota, num_clusters=config.num_clusters
    )
    return keep & ~static


def gather_kept(
    tokens: Shaped[Array, "t h w d"], result: PruneResult
) -> tuple[Shaped[Array, "k d"], Int[Array, "k 3"], Bool[Array, "k"]]:
    """The kept tokens in time order, their original `(t, h, w)` positions and validity.

    Padding slots hold zero tokens at position `(0, 0, 0)` and `valid = False`; feed the
    mask to the model's attention so that they take no part.
    """
    t, h, w, d = tokens.shape
    idx = jnp.minimum(result.indices, t * h * w - 1)
    kept = jnp.asarray(tokens).reshape(-1, d)[idx]
    kept = jnp.where(result.valid[:, None], kept, jnp.zeros((), kept.dtype))
    positions = jnp.stack([idx // (h * w), (idx // w) % h, idx % w], axis=-1)
    positions = jnp.where(result.valid[:, None], positions, 0).astype(jnp.int32)
    return kept, positions, result.valid
