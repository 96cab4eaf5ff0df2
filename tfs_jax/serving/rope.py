"""Qwen-VL M-RoPE position ids for a prompt whose video tokens were pruned.

A serving stack that drops video tokens before the LM must still give every surviving token
the multimodal rotary position (M-RoPE, `(t, h, w)` per token) it has in the unpruned
prompt, and must tell the decoder where generation continues (`rope_delta`). This module
computes both on the host, in numpy, from the token ids and the vision grids, as
transformers' `get_rope_index` and vLLM's `MRotaryEmbedding` do: it is prompt bookkeeping,
not array math, and prompts have different lengths, so it is neither jitted nor vmapped.

The rule (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). The prompt is text and runs of placeholders, one
run of `t * (h/m) * (w/m)` per grid row (`m` the spatial merge size), in order. A text token
takes the next position on all three axes. A vision run starts at `s`, the position the next
text token would take; its token at merged grid `(i, j, k)` (raster order) gets
`(s + T_i, s + j, s + k)`. After the run, text resumes at

  - "qwen": one past the largest position so far, `s + max(T_last, h/m - 1, w/m - 1) + 1`
    (transformers 4.51 and Qwen's fine-tuning code: what the models were trained with);
  - "transformers5": `s + max(h, w) / m`, whatever the temporal extent (transformers >= 5),
    so text overlaps the video's later frames once `T_last >= max(h, w) / m`.

`T_i = i` without `second_per_grid_ts` (Qwen2-VL). With it (Qwen2.5-VL, float32 as the
processors hand it over, `sec = second_per_grid_ts[v]`, `tps = tokens_per_second`):

  - "qwen": `T_i = trunc(f32(f32(i * sec) * tps))`;
  - "transformers5": `T_i = trunc(f32(i * f32(tps * sec)))`, the step rounded once.

Images (`t = 1`) are never scaled. Pruning deletes columns and nothing else.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Int

from tfs_jax.checks import ROPE_CONVENTIONS
from tfs_jax.checks import check_count
from tfs_jax.checks import check_grid_thw
from tfs_jax.checks import check_host_array
from tfs_jax.checks import check_image_grid
from tfs_jax.checks import check_placeholder_ids
from tfs_jax.checks import check_prompt_ids
from tfs_jax.checks import check_rope_options
from tfs_jax.checks import check_seconds_per_grid

CONVENTIONS = ROPE_CONVENTIONS
_INT32_MAX = np.iinfo(np.int32).max


class _Run(NamedTuple):
    """One vision run of the unpruned prompt: where it starts and its merged grid."""

    start: int  # index of its first placeholder in input_ids
    offsets: Int[np.ndarray, "t"]  # T_i, the temporal offset of each merged frame
    height: int  # h / m
    width: int  # w / m

    @property
    def size(self) -> int:
        return len(self.offsets) * self.height * self.width


def qwen_vl_rope_index(
    input_ids: Int[ArrayLike, "l"],
    video_grid_thw: Int[ArrayLike, "videos 3"] | None,
    *,
    video_token_id: int,
    spatial_merge_size: int = 2,
    second_per_grid_ts: Float[ArrayLike, "videos"] | None = None,
    tokens_per_second: float = 2.0,
    keep: Bool[ArrayLike, "n"] | None = None,
    convention: str = "qwen",
    split_frames: bool = False,
    image_grid_thw: Int[ArrayLike, "images 3"] | None = None,
    image_token_id: int | None = None,
) -> tuple[Int[np.ndarray, "3 l_kept"], int]:
    """M-RoPE positions of a pruned Qwen-VL prompt and the decoder's `rope_delta`.

    Every kept token, and every text token, gets the position the unpruned prompt gives it;
    the first generated token goes to `l_kept + rope_delta`, the position it would take
    without pruning, even when the prompt ends with video. One prompt per call: loop over a
    batch (prompts have different lengths; the serving stacks do the same).

    Args:
      input_ids: `(l,)` integer token ids of the UNPRUNED prompt, every placeholder present.
      video_grid_thw: `(v, 3)` integer `(t, h, w)` per video, patches before the `m x m`
        merge, in prompt order; `None` or `(0, 3)` for no video.
      video_token_id: the video placeholder id.
      spatial_merge_size: `m`; every `h` and `w` must be a multiple of it.
      second_per_grid_ts: `(v,)` seconds per temporal grid step (Qwen2.5-VL), taken as
        float32; `None` for `T_i = i` (Qwen2-VL, Qwen3-VL). For Qwen2.5-VL always pass it:
        its processors always do (transformers' fallback without it is 1 second).
      tokens_per_second: Qwen2.5-VL's `vision_config.tokens_per_second` (2 in its released
        checkpoints); used only with `second_per_grid_ts`.
      keep: `(n,)` bool over the `n` video placeholders in prompt order: which survive.
        `None` keeps all. Image placeholders are never pruned.
      convention: "qwen" (training-time rule, transformers 4.51) or "transformers5" (what
        transformers >= 5 computes; see the module docstring). Match the stack you serve.
      split_frames: Qwen3-VL's layout: each video row of `t` frames is read as `t` rows of
        one frame, each its own run (timestamp text may sit between frames). Rows of one
        frame are accepted as given.
      image_grid_thw: `(i, 3)` integer `(1, h, w)` per image, in prompt order, or `None`.
      image_token_id: the image placeholder id; given together with `image_grid_thw`.

    Returns:
      `(positions, rope_delta)`: `positions` a numpy int32 `(3, l_kept)` array, rows
      `(t, h, w)`, with `l_kept = l - (dropped placeholders)`; `rope_delta` a Python int,
      `max(unpruned positions) + 1 - l_kept`, to add to the decoding step index.

    Raises:
      ValueError: a traced or malformed input, a placeholder count that does not match
        the grids, a grid size not positive or not divisible by `m`, a bad `keep`, a
        `second_per_grid_ts` of the wrong length, an unknown convention, image arguments
        given half.

    Example (a 2-frame 2 x 4 video, m = 2, between two text tokens; it drops frame 1):
      >>> ids = [1, 9, 9, 9, 9, 2]
      >>> pos, delta = qwen_vl_rope_index(ids, [[2, 2, 4]], video_token_id=9,
      ...                                 keep=[True, True, False, False])
      >>> pos.tolist(), delta
      ([[0, 1, 1, 3], [0, 1, 1, 3], [0, 1, 2, 3]], 0)
    """
    ids = check_prompt_ids(input_ids)
    merge = check_count("spatial_merge_size", spatial_merge_size, 1)
    check_rope_options(convention, split_frames, tokens_per_second)
    check_placeholder_ids(video_token_id, image_token_id)
    videos = check_grid_thw("video_grid_thw", video_grid_thw, merge)
    seconds = check_seconds_per_grid(second_per_grid_ts, len(videos))
    images = check_image_grid(image_grid_thw, image_token_id, merge)
    if split_frames:
        videos, seconds = _split_frames(videos, seconds)
    offsets = [_temporal_offsets(int(t), sec, tokens_per_second, convention)
               for t, sec in zip(videos[:, 0], seconds)]
    runs = _runs(ids, video_token_id, "video", videos, offsets, merge)
    if images is not None:
        still = [np.zeros(1, np.int64)] * len(images)  # t = 1, never scaled in time
        runs += _runs(ids, image_token_id, "image", images, still, merge)
    full = _unpruned_positions(len(ids), sorted(runs, key=lambda run: run.start), convention)
    positions = full[:, _kept_columns(ids, video_token_id, keep)].astype(np.int32)
    return positions, int(full.max()) + 1 - positions.shape[1]


def _unpruned_positions(length: int, runs: list[_Run], convention: str) -> Int[np.ndarray, "3 l"]:
    """Positions of every token of the unpruned prompt; `runs` sorted by start."""
    out = np.empty((3, length), np.int64)
    cursor, nxt = 0, 0  # next token index, and the position the next text token takes
    for run in runs:
        out[:, cursor:run.start] = nxt + np.arange(run.start - cursor)
        nxt += run.start - cursor
        time, row, col = np.meshgrid(run.offsets, np.arange(run.height), np.arange(run.width),
                                     indexing="ij")
        out[:, run.start:run.start + run.size] = nxt + np.stack([time, row, col]).reshape(3, -1)
        nxt = _text_after(nxt, run, convention)
        cursor = run.start + run.size
    out[:, cursor:] = nxt + np.arange(length - cursor)
    if out.max() > _INT32_MAX:
        raise ValueError(f"positions reach {out.max()}, past int32; check second_per_grid_ts")
    return out


def _text_after(start: int, run: _Run, convention: str) -> int:
    """Where text resumes after a run that started at `start` (the two conventions).

    "transformers5" is transformers 5.x's `current_pos += max(h, w) // m` in
    `Qwen2_5_VLModel.get_rope_index`, read from the 5.x code as PR #48669 changed it (the
    5.24 file itself was not at hand); "qwen" is 4.51's `llm_pos_ids_list[-1].max() + 1`.
    """
    if convention == "qwen":
        return start + max(int(run.offsets[-1]), run.height - 1, run.width - 1) + 1
    return start + max(run.height, run.width)


def _temporal_offsets(t: int, seconds: float | None, tokens_per_second: float,
                      convention: str) -> Int[np.ndarray, "t"]:
    """`T_i` for `i < t`: float32 products truncated, in each convention's order."""
    if seconds is None:
        return np.arange(t, dtype=np.int64)
    frames = np.arange(t, dtype=np.float32)
    sec, tps = np.float32(seconds), np.float32(tokens_per_second)
    # Both orders are float32 on purpose: the torch code multiplies float32 tensors, and the
    # rounding differs between them (e.g. tps=25, sec=0.7, i=6: 104 against 105). 5.x before
    # PR #48669 truncated `sec` to an int first; that bug is not modelled.
    scaled = (frames * sec) * tps if convention == "qwen" else frames * (tps * sec)
    if scaled[-1] > _INT32_MAX:
        raise ValueError(
            f"temporal position {scaled[-1]} (second_per_grid_ts={seconds}) overflows int32"
        )
    return scaled.astype(np.int64)


def _runs(ids, token_id: int, kind: str, grids, offsets: list, merge: int) -> list[_Run]:
    """Cut the placeholders of one kind into runs, one per grid row, in prompt order."""
    where = np.flatnonzero(ids == token_id)
    heights, widths = grids[:, 1] // merge, grids[:, 2] // merge
    sizes = grids[:, 0] * heights * widths
    if where.size != sizes.sum():
        raise ValueError(
            f"input_ids has {where.size} {kind} placeholders ({kind}_token_id={token_id}) but "
            f"{kind}_grid_thw asks for {int(sizes.sum())} (t * h/m * w/m per row: {sizes.tolist()})"
        )
    runs, first = [], 0
    for row, size in enumerate(sizes.tolist()):
        span = where[first:first + size]
        if span[-1] - span[0] != size - 1:
            raise ValueError(
                f"the {size} placeholders of {kind} row {row} are not contiguous in input_ids "
                f"(indices {span[0]}..{span[-1]}); text between frames needs split_frames=True"
            )
        runs.append(_Run(int(span[0]), offsets[row], int(heights[row]), int(widths[row])))
        first += size
    return runs


def _kept_columns(ids, video_token_id: int, keep) -> Bool[np.ndarray, "l"]:
    """Which columns of the unpruned prompt survive: all but the dropped video placeholders."""
    columns = np.ones(len(ids), bool)
    if keep is None:
        return columns
    keep = check_host_array("keep", keep)
    placeholders = np.flatnonzero(ids == video_token_id)
    if keep.dtype != np.bool_:
        raise ValueError(f"keep must be a bool mask, got dtype {keep.dtype}")
    if keep.shape != placeholders.shape:
        raise ValueError(
            f"keep must have shape ({placeholders.size},), one entry per video placeholder, "
            f"got {keep.shape}"
        )
    columns[placeholders] = keep
    return columns


def _split_frames(videos, seconds: list) -> tuple[Int[np.ndarray, "f 3"], list]:
    """Qwen3-VL's reading: a row of `t` frames becomes `t` rows of one frame."""
    frames = np.repeat(videos, videos[:, 0], axis=0)
    frames[:, 0] = 1
    return frames, [sec for sec, t in zip(seconds, videos[:, 0]) for _ in range(t)]
