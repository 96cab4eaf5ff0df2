"""tfs_jax/serving/embeds.py: pruning a prompt's merged video embeddings, and buckets."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tfs_jax
from tfs_jax import baselines
from tfs_jax.decision import gather_slots
from tfs_jax.serving import compact
from tfs_jax.serving import bucket_sizes
from tfs_jax.serving import pick_bucket
from tfs_jax.serving import prune_video_embeds
from tfs_jax.serving.embeds import PrunedVideos
from tfs_jax.serving import qwen_vl_rope_index

CFG = tfs_jax.TFSConfig(num_clusters=3, kmeans_iters=3)
# Two videos, patches before the 2 x 2 merge: merged grids (4, 3, 5) and (2, 4, 2).
GRID = ((4, 6, 10), (2, 8, 4))
MERGED = ((4, 3, 5), (2, 4, 2))


def _embeds(seed=0, d=8):
    """Merged embeddings of both videos in order: a background with a moving blob each."""
    rng = np.random.default_rng(seed)
    parts = []
    for t, h, w in MERGED:
        video = np.repeat(rng.normal(size=(1, h, w, d)), t, axis=0) + 0.05 * rng.normal(size=(t, h, w, d))
        for f in range(t):
            video[f, 1, f % w] += 4.0
        parts.append(video.reshape(-1, d))
    return np.concatenate(parts).astype(np.float32)


def _per_video(embeds, method):
    """Each video pruned on its own merged grid, as the contract says."""
    masks, start = [], 0
    for v, (t, h, w) in enumerate(MERGED):
        video = embeds[start:start + t * h * w].reshape(t, h, w, -1)
        key = jax.random.fold_in(jax.random.key(0), v)
        if method == "tfs":
            masks.append(np.asarray(tfs_jax.tfs_prune(video, CFG, key=key).keep_mask))
        else:
            masks.append(np.asarray(baselines.prune(method, video, CFG.retain_ratio, key=key).keep_mask))
        start += t * h * w
    return masks


@pytest.mark.parametrize("method", ["tfs", "uniform"])
def test_videos_are_pruned_one_by_one_on_the_merged_grid(method):
    embeds = _embeds()
    out = prune_video_embeds(embeds, GRID, CFG, method=method)
    masks = _per_video(embeds, method)
    keep = np.concatenate([m.reshape(-1) for m in masks])
    np.testing.assert_array_equal(out.keep_mask, keep)
    n = int(out.num_kept)
    assert n == keep.sum() and np.asarray(out.slot_valid).tolist() == [i < n for i in range(out.slot_valid.shape[0])]
    # Slots: every video's own static budget, summed (15 of 60 and 4 of 16 at 25%).
    assert out.embeds.shape == (15 + 4, 8)
    np.testing.assert_array_equal(out.embeds[:n], embeds[keep])
    assert isinstance(out, tfs_jax.Decision)  # a decision over the placeholders
    np.testing.assert_array_equal(out.indices[:n], np.flatnonzero(keep))
    assert (np.asarray(out.indices[n:]) == keep.size).all()
    assert not np.asarray(out.embeds[n:]).any()
    frames = np.concatenate([m.sum(axis=(1, 2)) for m in masks])
    np.testing.assert_array_equal(out.frame_counts, frames)
    assert out.frame_counts.shape == (4 + 2,) and int(np.sum(out.frame_counts)) == n


def test_jit_with_static_grid_and_keep_feeds_the_rope_index():
    embeds = _embeds(1)
    prune = jax.jit(prune_video_embeds, static_argnames=("video_grid_thw", "method", "impl"))
    out = prune(jnp.asarray(embeds), GRID, CFG)
    np.testing.assert_array_equal(out.keep_mask, prune_video_embeds(embeds, GRID, CFG).keep_mask)
    # The prompt: 3 text tokens, video 0, 2 text tokens, video 1, 1 text token.
    ids = [1, 2, 3] + [9] * 60 + [4, 5] + [9] * 16 + [6]
    full, full_delta = qwen_vl_rope_index(ids, GRID, video_token_id=9)
    pruned, delta = qwen_vl_rope_index(ids, GRID, video_token_id=9, keep=np.asarray(out.keep_mask))
    columns = np.flatnonzero(np.r_[[True] * 3, np.asarray(out.keep_mask[:60]), [True] * 2,
                                   np.asarray(out.keep_mask[60:]), [True]])
    np.testing.assert_array_equal(pruned, full[:, columns])
    assert pruned.shape[1] + delta == len(ids) + full_delta


def test_compact_picks_the_smallest_bucket_and_keeps_every_kept_token():
    assert bucket_sizes(300) == (128, 256, 300) and bucket_sizes(128) == (128,)
    assert pick_bucket(129, (128, 256)) == 256 and pick_bucket(0, (8, 4)) == 4
    with pytest.raises(ValueError, match="no bucket"):
        pick_bucket(300, (128, 256))
    embeds = _embeds(2)
    out = prune_video_embeds(embeds, GRID, CFG)
    n = int(out.num_kept)
    assert pick_bucket(n, (n - 1, n, 2 * n)) == n  # the edges: one short, exact, double
    small = compact(out, buckets=(n - 1, n, 2 * n))  # n - 1 would drop the last kept token
    assert small.embeds.shape == (n, 8) and bool(np.all(small.slot_valid))
    np.testing.assert_array_equal(small.embeds, out.embeds[:n])
    np.testing.assert_array_equal(small.keep_mask, out.keep_mask)
    big = compact(out, buckets=(64,))  # larger than the 19 slots: padded, never lost
    assert big.embeds.shape == (64, 8) and int(np.sum(big.slot_valid)) == n
    np.testing.assert_array_equal(big.embeds[:n], out.embeds[:n])
    assert not np.asarray(big.embeds[n:]).any()


@st.composite
def _kept_and_buckets(draw):
    """A keep mask on a small grid within its 25% budget, and buckets of which at least one
    holds the kept tokens."""
    t, h, w = draw(st.sampled_from([(1, 1, 1), (2, 3, 4)]))  # few shapes: few compiles
    slots = max(1, (t * h * w + 2) // 4)
    flat = draw(st.sets(st.integers(0, t * h * w - 1), max_size=slots))
    keep = np.isin(np.arange(t * h * w), sorted(flat)).reshape(t, h, w)
    buckets = draw(st.lists(st.integers(1, 2 * slots), min_size=1, max_size=4))
    buckets.append(draw(st.integers(max(len(flat), 1), 2 * slots)))  # one that holds them
    return keep, draw(st.permutations(buckets))


@given(_kept_and_buckets())
def test_compact_takes_the_smallest_bucket_and_loses_nothing(case):
    keep, buckets = case
    n, (t, h, w) = int(keep.sum()), keep.shape
    tokens = np.arange(keep.size * 2, dtype=np.float32).reshape(t, h, w, 2)
    decision = tfs_jax.decide(jnp.asarray(keep), 0.25)
    out = PrunedVideos(**vars(decision), embeds=gather_slots(tokens.reshape(-1, 2), decision),
                       frame_counts=jnp.asarray(keep.sum(axis=(1, 2)), jnp.int32))
    cut = compact(out, buckets=buckets)
    assert cut.slot_valid.shape == (min(b for b in buckets if b >= n),)  # the smallest that holds n
    assert int(cut.num_kept) == n and np.asarray(cut.slot_valid).sum() == n
    np.testing.assert_array_equal(cut.embeds[:n], tokens[keep])  # embeddings, in order
    _, positions, valid = tfs_jax.gather_kept(tokens, cut)
    np.testing.assert_array_equal(np.asarray(positions)[np.asarray(valid)], np.argwhere(keep))
    np.testing.assert_array_equal(cut.frame_counts, keep.sum(axis=(1, 2)))
    np.testing.assert_array_equal(cut.keep_mask, keep)


def test_compact_a_decision_gathers_the_same_tokens():
    video = _embeds(3)[:60].reshape(4, 3, 5, 8)
    result = tfs_jax.tfs_prune(video, CFG)
    n = int(result.num_kept)
    cut = compact(result, buckets=(n + 1,))
    assert cut.indices.shape == (n + 1,) and isinstance(cut, tfs_jax.TFSResult)
    kept, pos, valid = tfs_jax.gather_kept(video, cut)
    want_kept, want_pos, _ = tfs_jax.gather_kept(video, result)
    np.testing.assert_array_equal(kept[:n], want_kept[:n])
    np.testing.assert_array_equal(pos[:n], want_pos[:n])
    assert np.asarray(valid).sum() == n and int(cut.indices[n]) == video.shape[0] * 15
    with pytest.raises(ValueError, match="outside jax.jit"):
        jax.jit(functools.partial(compact, buckets=(8,)))(result)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_gather_slots_is_the_clamped_gather_with_zero_padding(dtype):
    rows = jnp.asarray(_embeds(4)[:60], dtype)
    decision = tfs_jax.decide(jnp.arange(60).reshape(4, 3, 5) % 7 == 0, 0.25)
    n = int(decision.num_kept)
    assert n < decision.indices.shape[0]  # some padding slots
    got = gather_slots(rows, decision)
    want = jnp.where(decision.slot_valid[:, None], rows[jnp.minimum(decision.indices, 59)], 0)
    assert got.dtype == rows.dtype == want.dtype
    assert np.asarray(got).tobytes() == np.asarray(want).tobytes()  # bit for bit
    np.testing.assert_array_equal(got[:n], rows[np.flatnonzero(np.asarray(decision.keep_mask))])
    assert not np.asarray(got[n:], np.float32).any()
    kept, _, _ = tfs_jax.gather_kept(rows.reshape(4, 3, 5, 8), decision)
    assert kept.dtype == got.dtype and np.asarray(kept).tobytes() == np.asarray(got).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pruned_embeds_keep_their_dtype(dtype):
    out = prune_video_embeds(_embeds().astype(dtype), GRID, CFG)
    assert out.embeds.dtype == dtype


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(embeds=np.zeros((75, 8), np.float32)), r"embeds must have shape \(76, D\)"),
        (dict(video_grid_thw=((4, 6, 9),)), "multiples of spatial_merge_size"),
        (dict(method="tome"), "method"),
        (dict(config={"retain_ratio": 0.25}), "config"),
        (dict(impl="cuda"), "impl"),
        (dict(spatial_merge_size=0), "spatial_merge_size"),
        (dict(spatial_merge_size=2.0), "spatial_merge_size"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    args = dict(embeds=_embeds(), video_grid_thw=GRID, config=CFG)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        prune_video_embeds(args.pop("embeds"), args.pop("video_grid_thw"), **args)
