"""`tfs_jax.vlm.positions_in_slots` against the unpruned prompt: every kept video slot, and
every text token, carries the position the unpruned prompt gives it, the unpruned positions
built here by hand from the grid (Qwen2-VL's rule), without `positions_in_slots`."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tfs_jax.serving import qwen_vl_rope_index
from tfs_jax.vlm import positions_in_slots

VIDEO = 9  # the placeholder id


def unpruned_positions(prefix: int, grid: tuple[int, int, int], suffix: int) -> np.ndarray:
    """`(3, P + T*H*W + S)` positions of `[prefix text, video, suffix text]` on the merged
    grid: text `i` at `(i, i, i)`, video token `(t, h, w)` at `P + (t, h, w)` in raster
    order, the suffix from `P + max(T, H, W)` on."""
    t, h, w = np.meshgrid(*(np.arange(g) for g in grid), indexing="ij")
    video = prefix + np.stack([t.ravel(), h.ravel(), w.ravel()])
    start = prefix + max(grid)
    text = [np.arange(prefix), start + np.arange(suffix)]
    return np.concatenate([np.broadcast_to(text[0], (3, prefix)), video,
                           np.broadcast_to(text[1], (3, suffix))], axis=1)


def test_hand_positions_are_qwen_vl_rope_index_unpruned():
    grid = (3, 2, 4)
    ids = [1, 2] + [VIDEO] * 24 + [3, 4, 5]
    full, _ = qwen_vl_rope_index(ids, [(3, 4, 8)], video_token_id=VIDEO)
    np.testing.assert_array_equal(full, unpruned_positions(2, grid, 3))


@st.composite
def _prompts(draw):
    grid = draw(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 5)))
    n = int(np.prod(grid))
    keep = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    prefix, suffix = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    spare = draw(st.integers(0, 3))  # empty slots beyond the kept tokens
    return grid, keep, prefix, suffix, int(keep.sum()) + spare


@given(_prompts())
def test_slots_carry_the_unpruned_prompts_positions_indexed_by_keep(case):
    grid, keep, prefix, suffix, slots = case
    t, h, w = grid
    ids = [1] * prefix + [VIDEO] * keep.size + [2] * suffix
    pruned, _ = qwen_vl_rope_index(ids, [(t, 2 * h, 2 * w)], video_token_id=VIDEO, keep=keep)
    n = int(keep.sum())
    got = positions_in_slots(pruned, prefix_len=prefix, num_kept=n, slots=slots)

    full = unpruned_positions(prefix, grid, suffix).T  # (L, 3), no positions_in_slots
    video = full[prefix:prefix + keep.size]
    assert got.shape == (prefix + slots + suffix, 3)
    np.testing.assert_array_equal(got[:prefix], full[:prefix])
    np.testing.assert_array_equal(got[prefix:prefix + n], video[keep])  # by their grid
    np.testing.assert_array_equal(got[prefix + slots:], full[prefix + keep.size:])
    np.testing.assert_array_equal(got[prefix + n:prefix + slots],  # masked: last prefix position
                                  np.broadcast_to(full[prefix - 1], (slots - n, 3)))
