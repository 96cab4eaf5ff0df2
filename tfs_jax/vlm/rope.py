"""M-RoPE: the `(t, h, w)` positions of the LM's sequence and their rotary embedding.

Positions follow Qwen2-VL's `get_rope_index` on the *unpruned* sequence (package docstring);
the rotary frequency bands are split into temporal, height and width sections, each rotated
by that coordinate (Qwen2-VL `mrope_section`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

from tfs_jax.models.decoder import apply_rope  # noqa: F401  (re-exported: the one decoder's RoPE)
from tfs_jax.models.decoder import mrope_cos_sin  # noqa: F401


def sequence_positions(
    video_positions: Int[Array, "k 3"],
    *,
    prefix_len: int,
    suffix_len: int,
    grid: tuple[int, int, int],
    temporal_stride: int = 1,
) -> Int[Array, "l 3"]:
    """M-RoPE `(t, h, w)` positions of `[prefix, video slots, suffix]` (Qwen2-VL rope index).

    Args:
      video_positions: `(K, 3)` original `(t, h, w)` grid coordinates of the video slots
        (padding slots may hold anything: they are never attended).
      prefix_len, suffix_len: P and S text tokens.
      grid: the unpruned video grid `(T, H, W)`: the suffix starts after its largest position.
      temporal_stride: position step between frames.

    Returns:
      `(P + K + S, 3)` int32 positions. Text tokens have equal components.

    Example: one video slot at `(0, 1, 1)` of a `(2, 2, 3)` grid, `P = 2`, `S = 1` gives
    `[[0, 0, 0], [1, 1, 1], [2, 3, 3], [5, 5, 5]]`: the suffix starts at `2 + max(1, 1, 2) + 1`.
    """
    t, h, w = grid
    scale = jnp.array([temporal_stride, 1, 1], jnp.int32)
    video = prefix_len + jnp.asarray(video_positions, jnp.int32) * scale
    suffix_start = prefix_len + max((t - 1) * temporal_stride, h - 1, w - 1) + 1
    prefix = jnp.broadcast_to(jnp.arange(prefix_len, dtype=jnp.int32)[:, None], (prefix_len, 3))
    suffix = suffix_start + jnp.arange(suffix_len, dtype=jnp.int32)
    suffix = jnp.broadcast_to(suffix[:, None], (suffix_len, 3))
    return jnp.concatenate([prefix, video, suffix], axis=0)


def grid_positions(grid: tuple[int, int, int]) -> Int[Array, "n 3"]:
    """`(t, h, w)` of every token of a `(T, H, W)` grid in flat order `(t * H + h) * W + w`."""
    t, h, w = np.meshgrid(*(np.arange(g) for g in grid), indexing="ij")
    return jnp.asarray(np.stack([t, h, w], axis=-1).reshape(-1, 3), jnp.int32)


def positions_in_slots(
    prompt_positions: Int[np.ndarray, "3 l_kept"], *, prefix_len: int, num_kept: int, slots: int
) -> Int[np.ndarray, "l 3"]:
    """A pruned prompt's positions laid out on this LM's slots `[prefix, K slots, suffix]`.

    `prompt_positions` are those of the dense pruned prompt `[prefix, kept video tokens,
    suffix]` (`tfs_jax.serving.qwen_vl_rope_index`); the kept tokens fill the first
    `num_kept` of the `slots` video slots, and the empty slots, which are masked, repeat
    the last prefix position. Host-side numpy: the result is `forward`'s `positions`.
    """
    pos = np.asarray(prompt_positions).T
    if pos.ndim != 2 or pos.shape[1] != 3 or not 0 <= num_kept <= slots:
        raise ValueError(f"prompt_positions must be (3, L) with 0 <= num_kept={num_kept} <= slots={slots}, "
                         f"got {np.shape(prompt_positions)}")
    fill = np.broadcast_to(pos[max(prefix_len - 1, 0)], (slots - num_kept, 3))
    head, kept, tail = np.split(pos, [prefix_len, prefix_len + num_kept])
    return np.concatenate([head, kept, fill, tail]).astype(np.int32)
