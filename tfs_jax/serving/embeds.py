"""Pruning a Qwen-VL prompt's merged video embeddings, and packing kept slots into buckets.

Qwen-VL's vision tower turns each video row `(t, h, w)` of `video_grid_thw` (patches before
the `m x m` merge) into `t * (h/m) * (w/m)` embeddings in raster order of the merged grid;
a prompt's videos come one after another. `prune_video_embeds` prunes each video on that
merged grid (TFS or any baseline: motion runs across the video's frames, so a Qwen3-VL
video, whose positions treat frames apart, is still pruned as one video) and returns:

- a `Decision` over every video placeholder of the prompt, in order: its `keep_mask` is
  `qwen_vl_rope_index`'s `keep`, and says which placeholders a stack deletes;
- the kept embeddings in the decision's static slots, kept ones first in prompt order;
- kept tokens per merged frame (Qwen3-VL's timestamps and vLLM's count checks need them).

Coalescing leaves budget unspent, and a fixed slot count would spend that compute anyway.
`compact` moves a result into the smallest of a static list of slot counts that holds its
kept tokens: one LM program per bucket, never one per video.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from tfs_jax import baselines
from tfs_jax.budget import static_budget
from tfs_jax.checks import check_count
from tfs_jax.checks import check_grid_thw
from tfs_jax.checks import check_impl
from tfs_jax.checks import check_key
from tfs_jax.config import TFSConfig
from tfs_jax.decision import Decision
from tfs_jax.decision import decide
from tfs_jax.decision import gather_slots
from tfs_jax.pipeline import tfs_prune
from tfs_jax.tokens import as_typed_key

BUCKET_STEP = 128  # default bucket spacing: a multiple of common matmul tiles


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["indices", "slot_valid", "keep_mask", "num_kept", "embeds", "frame_counts"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class PrunedVideos(Decision):
    """What `prune_video_embeds` returns: a `Decision` over the prompt's `N` video
    placeholders (`keep_mask` `(N,)`, `indices` `(K,)` into them), the kept embeddings in
    the same `K` slots, and kept tokens per merged frame (`F` frames, videos in order).

    Attributes (beyond `Decision`'s):
      embeds: `(K, D)` the kept embeddings in prompt order, then zeros.
      frame_counts: `(F,) int32` kept tokens per merged frame.
    """

    embeds: Float[Array, "k d"]
    frame_counts: Int[Array, "f"]


def prune_video_embeds(
    embeds: Float[Array, "n d"],
    video_grid_thw,
    config: TFSConfig | None = None,
    *,
    spatial_merge_size: int = 2,
    method: str = "tfs",
    key: Array | None = None,
    impl: str = "auto",
) -> PrunedVideos:
    """Prune every video of a prompt on its merged `(t, h/m, w/m)` grid.

    Args:
      embeds: `(N, D)` merged video embeddings of all the prompt's videos, in order.
      video_grid_thw: `(V, 3)` integer `(t, h, w)` rows, patches before the merge, as the
        processor gives them; host values (static: they set every shape).
      config: a `TFSConfig` (default `TFSConfig()`); its `retain_ratio` is every method's.
      spatial_merge_size: `m`.
      method: "tfs" or a name of `tfs_jax.baselines.RULES`.
      key: PRNG key (default `key(0)`); video `v` uses `fold_in(key, v)`.
      impl: TFS's neighbourhood-op implementation (static).

    Returns:
      `PrunedVideos` with `K = sum_v static_budget(n_v, retain_ratio)` slots.
    """
    config = TFSConfig() if config is None else config
    if not isinstance(config, TFSConfig):
        raise ValueError(f"config must be a TFSConfig, got {type(config).__name__}")
    merge = check_count("spatial_merge_size", spatial_merge_size, 1)
    rows = check_grid_thw("video_grid_thw", video_grid_thw, merge)
    grids = tuple((int(t), int(h) // merge, int(w) // merge) for t, h, w in rows)
    total = sum(t * h * w for t, h, w in grids)
    shape = getattr(embeds, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != total or shape[1] < 1:
        raise ValueError(
            f"embeds must have shape ({total}, D): {total} merged tokens for video_grid_thw "
            f"{rows.tolist()} with spatial_merge_size={merge}, got {shape}"
        )
    if method != "tfs" and method not in baselines.RULES:
        raise ValueError(f"method={method!r} must be 'tfs' or one of {tuple(baselines.RULES)}")
    check_key(key)
    check_impl(impl)
    return _prune_videos(embeds, config, as_typed_key(key), grids=grids, method=method, impl=impl)


@functools.partial(jax.jit, static_argnames=("grids", "method", "impl"))
def _prune_videos(embeds, config, key, *, grids, method, impl) -> PrunedVideos:
    ratio = config.retain_ratio
    masks, start = [], 0
    for v, (t, h, w) in enumerate(grids):
        video = embeds[start:start + t * h * w].reshape(t, h, w, -1)
        video_key = jax.random.fold_in(key, v)
        if method == "tfs":
            decision = tfs_prune(video, config, key=video_key, impl=impl)
        else:
            decision = baselines.prune(method, video, ratio, key=video_key)
        masks.append(decision.keep_mask)
        start += t * h * w
    keep = jnp.concatenate([m.reshape(-1) for m in masks])
    slots = sum(static_budget(t * h * w, ratio) for t, h, w in grids)
    decision = decide(keep, ratio, slots=slots)
    kept = gather_slots(embeds, decision)
    frame_counts = jnp.concatenate([jnp.sum(m, axis=(1, 2), dtype=jnp.int32) for m in masks])
    return PrunedVideos(**vars(decision), embeds=kept, frame_counts=frame_counts)


# ----------------------------------------------------------------------------------------
# Buckets.


def bucket_sizes(slots: int, step: int = BUCKET_STEP) -> tuple[int, ...]:
    """Multiples of `step` below `slots`, then `slots` itself.

    >>> bucket_sizes(300)
    (128, 256, 300)
    """
    slots, step = check_count("slots", slots, 1), check_count("step", step, 1)
    return tuple(range(step, slots, step)) + (slots,)


def pick_bucket(num_kept: int, buckets) -> int:
    """The smallest bucket that holds `num_kept` tokens."""
    sizes = sorted(check_count("bucket", b, 1) for b in buckets)
    fits = [b for b in sizes if b >= num_kept]
    if not fits:
        raise ValueError(f"no bucket of {sizes} holds {num_kept} kept tokens")
    return fits[0]


def compact(result, buckets=None):
    """`result` (any `Decision`: a `TFSResult`, a baseline's, `PrunedVideos`) with its slots
    cut, or padded, to the smallest bucket that holds its kept tokens.

    Kept entries come first in every slot array, so cutting loses none; padding slots are
    invalid (index `keep_mask.size`, zero embedding). Reads `num_kept` on the host: call it
    between the pruner and the LM, outside `jit`. `buckets` defaults to
    `bucket_sizes(slots)`; pass one list for every request so that videos of different
    lengths share the LM programs.
    """
    if not isinstance(result, Decision):
        raise ValueError(f"result must be a Decision (PrunedVideos is one), got {type(result).__name__}")
    fields = {"indices": result.keep_mask.size, "slot_valid": False}
    if isinstance(result, PrunedVideos):
        fields["embeds"] = 0
    if isinstance(result.num_kept, jax.core.Tracer):
        raise ValueError("compact reads num_kept on the host: call it outside jax.jit")
    slots = result.slot_valid.shape[0]
    size = pick_bucket(int(result.num_kept), bucket_sizes(slots) if buckets is None else buckets)
    return dataclasses.replace(
        result, **{f: _resize(getattr(result, f), size, fill) for f, fill in fields.items()}
    )


def _resize(x: Array, size: int, fill) -> Array:
    """The first `size` entries of `x` along axis 0, padded with `fill` if `x` is shorter."""
    if size <= x.shape[0]:
        return x[:size]
    pad = jnp.full((size - x.shape[0],) + x.shape[1:], fill, x.dtype)
    return jnp.concatenate([x, pad])
