"""LLaVA-OneVision's `Model`: public stages, and `forward` / `generate` composed from them.

    vision -> prune_videos -> prompt -> prefill -> decode ...

- `vision`: every frame through SigLIP, the projector and the 2x2 bilinear pooling
  (`vision.video_features`): `(V, T, q, q, d)`, `q = ceil(g / 2)` (14 at 384 px);
- `prune_videos`: `serving.prune_video_embeds` on each video's pooled `(T, q, q)` grid
  (TFS or a baseline of `baselines.RULES`), slots cut to a bucket by `serving.compact`;
  the `image_newline` that ends each video is never pruned;
- `prompt` (host, numpy): each video's `T q q + 1` placeholders (the newline last, as
  transformers' `masked_scatter` fills them) take the (kept) features and the newline; 1-D
  positions: `"renumber"` (default) numbers the kept tokens consecutively, as transformers
  does when fed fewer embeddings (and FastV, VisionZip); `"original"` keeps each kept
  token's unpruned position, with gaps; the prompt is padded at the end to a bucket;
- `prefill`, `decode`, `generate`: `tfs_jax.models.lm`'s, shared with every family (the
  decoder's 1-D RoPE reads the first of the three equal position rows).

Images (the anyres path) are not implemented: a prompt with image placeholders is refused.
`prune=None` reproduces transformers 4.51.3.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tfs_jax.checks import check_count
from tfs_jax.models.llava_onevision.config import LlavaOnevisionConfig
from tfs_jax.models.llava_onevision.vision import video_features
from tfs_jax.models.lm import BUCKET
from tfs_jax.models.lm import Output
from tfs_jax.models.lm import Prompt
from tfs_jax.models.lm import Stages
from tfs_jax.models.lm import POSITION_MODES  # noqa: F401  (re-exported: the modes `positions` takes)
from tfs_jax.models.lm import check_logits
from tfs_jax.models.lm import check_positions
from tfs_jax.models.lm import kept_positions
from tfs_jax.models.lm import check_token_ids
from tfs_jax.models.lm import padded_prompt
from tfs_jax.models.lm import prune_spec
from tfs_jax.serving import compact
from tfs_jax.serving import prune_video_embeds



class Model(Stages):
    """A loaded LLaVA-OneVision (`tfs_jax.models.load`): `config`, `params`, stages."""

    def __init__(self, config: LlavaOnevisionConfig, params: dict):
        self.config = config
        self.params = params

    # ------------------------------------------------------------------ stages

    def vision(self, pixel_values_videos):
        """Pooled, projected features `(V, T, q, q, d)` float32 of `(V, T, C, S, S)` frames
        (one video may come as `(T, C, S, S)`), `S` the tower's `image_size`."""
        frames = check_frames(pixel_values_videos, self.config)
        v, t = frames.shape[:2]
        out = video_features(self.params, jnp.asarray(frames).reshape(v * t, *frames.shape[2:]),
                             config=self.config)
        return out.reshape(v, t, *out.shape[1:])

    def prune_videos(self, video_embeds, *, prune, retain_ratio=None, key=None, buckets=None):
        """Prune every video on its pooled `(T, q, q)` grid; `None` when `prune` is None.

        Args:
          video_embeds: `(V, T, q, q, d)` from `vision`.
          prune: a `TFSConfig`, a baseline name of `tfs_jax.baselines.RULES`, or None.
          retain_ratio: the kept share; required for a baseline, replaces a TFSConfig's own.
          key: PRNG key of the random pruners (default `key(0)`).
          buckets: slot counts for `serving.compact` (default its own).

        Returns:
          `serving.PrunedVideos` whose `keep_mask` is over the `V T q q` grid tokens (the
          newlines are not in it: they are always kept).
        """
        config, method = prune_spec(prune, retain_ratio)
        if config is None:
            return None
        v, t, q, _, d = _grid_shape(video_embeds)
        grids = np.tile([t, q, q], (v, 1))
        pruned = prune_video_embeds(jnp.reshape(video_embeds, (v * t * q * q, d)), grids, config,
                                    method=method, key=key, spatial_merge_size=1)
        return compact(pruned, buckets)

    def prompt(self, input_ids, *, video_embeds=None, pruned=None, positions: str = "renumber",
               bucket: int = BUCKET) -> Prompt:
        """The LM's input (host-side bookkeeping; module docstring).

        Args:
          input_ids: `(L,)` the unpruned prompt: each video's `T q q + 1` placeholders.
          video_embeds: `(V, T, q, q, d)` from `vision` (its shape is needed when pruned too).
          pruned: `prune_videos`' result, or None.
          positions: "renumber" or "original" (module docstring).
          bucket: the padded length is a multiple of it.
        """
        check_positions(positions)
        ids = check_token_ids(input_ids, self.config.text.vocab_size)
        keep = self.placeholder_keep(ids, video_embeds, pruned)
        kept_ids, rows, visual = self._rows(ids, video_embeds, pruned, keep)
        # the newlines are always kept, so "original" continues after the unpruned length
        _, pos, delta = kept_positions(ids == self.config.video_token_id, keep, positions)
        return padded_prompt(kept_ids, rows, visual, np.tile(pos, (3, 1)), delta,
                             check_count("bucket", bucket, 1))

    def placeholder_keep(self, input_ids, video_embeds, pruned) -> np.ndarray | None:
        """`(V (T q q + 1),)` bool over the prompt's video placeholders (newlines True), or
        None unpruned; the placeholder count is checked against the features' shape."""
        v, t, q = (0, 0, 0) if video_embeds is None else _grid_shape(video_embeds)[:3]
        self._check_placeholders(input_ids, v, t * q * q)
        if pruned is None:
            return None
        grid = np.asarray(pruned.keep_mask, bool).reshape(v, t * q * q)
        return np.concatenate([grid, np.ones((v, 1), bool)], axis=1).reshape(-1)

    def _check_placeholders(self, input_ids, videos: int, per_video: int) -> None:
        """No image placeholder, and `videos * (per_video + 1)` video placeholders."""
        ids = check_token_ids(input_ids, self.config.text.vocab_size)
        c = self.config
        if np.any(ids == c.image_token_id):
            raise ValueError(f"input_ids hold image placeholders (id {c.image_token_id}): LLaVA-OneVision's "
                             "image path is not implemented, only videos")
        found, want = int(np.sum(ids == c.video_token_id)), videos * (per_video + 1)
        if found != want:
            raise ValueError(f"input_ids hold {found} video placeholders (id {c.video_token_id}) but "
                             f"{videos} video(s) of {per_video} tokens and a newline each need {want}")

    # ------------------------------------------------------------------ compositions

    def prepare(self, input_ids, *, pixel_values_videos=None, prune=None, retain_ratio=None,
                positions: str = "renumber", key=None) -> tuple[Prompt, np.ndarray | None]:
        """`vision`, `prune_videos` and `prompt` in a row; returns the prompt and `keep`
        (over the video placeholders, newlines True; None unpruned)."""
        prune_spec(prune, retain_ratio)
        check_positions(positions)
        v, t = (0, 0) if pixel_values_videos is None else check_frames(pixel_values_videos, self.config).shape[:2]
        self._check_placeholders(input_ids, v, t * self.config.vision.pooled ** 2)  # before any work
        videos = None if pixel_values_videos is None else self.vision(pixel_values_videos)
        pruned = None
        if videos is not None and prune is not None:
            pruned = self.prune_videos(videos, prune=prune, retain_ratio=retain_ratio, key=key)
        prompt = self.prompt(input_ids, video_embeds=videos, pruned=pruned, positions=positions)
        return prompt, self.placeholder_keep(input_ids, videos, pruned)

    def forward(self, input_ids, *, pixel_values_videos=None, prune=None, retain_ratio=None,
                positions: str = "renumber", logits: str = "all", hidden_states: bool = False,
                key=None) -> Output:
        """One prompt `(L,)` through the model (`tfs_jax.models` API); `Output.keep` is over
        the video placeholders (newlines True), `Output.positions` `(3, L')` equal rows."""
        check_logits(logits)
        prompt, keep = self.prepare(input_ids, pixel_values_videos=pixel_values_videos, prune=prune,
                                    retain_ratio=retain_ratio, positions=positions, key=key)
        return self.output(prompt, keep, logits=logits, hidden_states=hidden_states)

    # ------------------------------------------------------------------ helpers

    def _rows(self, ids, video_embeds, pruned, keep):
        """The kept ids, the visual row of each slot (-1: text) and the visual array: the
        kept features in prompt order, then the newline."""
        d = self.config.text.hidden_size
        is_video = ids == self.config.video_token_id
        if keep is not None:
            ids = np.delete(ids, np.flatnonzero(is_video)[~keep])
            is_video = ids == self.config.video_token_id
        if video_embeds is None:
            return ids, np.full(ids.shape, -1, np.int64), jnp.zeros((1, d), jnp.float32)
        v, t, q, _, _ = _grid_shape(video_embeds)
        feats = (jnp.reshape(video_embeds, (-1, d)) if pruned is None else pruned.embeds).astype(jnp.float32)
        counts = np.full(v, t * q * q) if keep is None else keep.reshape(v, -1)[:, :-1].sum(axis=1)
        starts = np.cumsum(counts) - counts
        # each video: its kept features in order, then the newline (the row after them all)
        slots = np.concatenate([np.append(s + np.arange(n), feats.shape[0]) for s, n in zip(starts, counts)])
        newline = self.params["newline"].astype(jnp.float32)[None]
        rows = np.full(ids.shape, -1, np.int64)
        rows[is_video] = slots
        return ids, rows, jnp.concatenate([feats, newline])


def check_frames(pixel_values_videos, config: LlavaOnevisionConfig):
    """`(V, T, C, S, S)` frames (a 4-D array is one video); ValueError naming the shape."""
    shape = tuple(getattr(pixel_values_videos, "shape", ()))
    v = config.vision
    if len(shape) == 4:
        pixel_values_videos = pixel_values_videos[None]
        shape = (1,) + shape
    want = (v.num_channels, v.image_size, v.image_size)
    if len(shape) != 5 or shape[2:] != want or min(shape[:2]) < 1:
        raise ValueError(f"pixel_values_videos must have shape (videos, frames, {want[0]}, {want[1]}, "
                         f"{want[2]}), got {shape}")
    return pixel_values_videos


def _grid_shape(video_embeds) -> tuple[int, int, int, int, int]:
    shape = tuple(np.shape(video_embeds))
    if len(shape) != 5 or shape[2] != shape[3]:
        raise ValueError(f"video_embeds must have shape (videos, frames, q, q, d), got {shape}")
    return shape
