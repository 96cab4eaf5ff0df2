"""InternVL3 / 3.5's `Model`: the Qwen2.5-VL stage contract over InternViT and a Qwen3 LM.

    vision -> prune_videos -> prompt -> prefill -> decode ...

- `vision`: one 448-px tile per frame to `(T, 256, d)` embeddings (`vision.vision_tower`);
- `prune_videos`: each video is a `(T, g/2, g/2, d)` grid (`(T, 16, 16, d)` at 448 px),
  pruned by `serving.prune_video_embeds` (TFS or a baseline), slots cut by `serving.compact`;
- `prompt` (host): the placeholders (`<IMG_CONTEXT>`) of pruned tokens deleted, everything
  else kept, so each frame's block shrinks while its `Frame{i}: <img>` ... `</img>` text and
  the newlines stay. 1-D positions (M-RoPE with three equal rows): renumbered consecutively
  (`positions="renumber"`, what transformers does when fed fewer embeddings, as FastV and
  VisionZip do), or the unpruned prompt's positions of the kept tokens, gaps left
  (`positions="original"`); new tokens continue after the last one;
- `prefill`, `decode`, `generate`: `lm.Stages`' (the one decoder, as every family's).

The prompt is the text transformers' `InternVLProcessor` writes for a video: frames joined
by newlines, `Frame{i+1}: <img>` + `<IMG_CONTEXT>` x 256 + `</img>`. Frames of all videos
come one after another in `pixel_values_videos`; `frames_per_video` splits them (default:
one video). Images (several tiles per image) are not wired yet.
"""

from __future__ import annotations

import numpy as np

from tfs_jax.models.internvl.config import InternVLConfig
from tfs_jax.models.internvl.vision import check_pixels
from tfs_jax.models.internvl.vision import vision_tower
from tfs_jax.models.lm import BUCKET
from tfs_jax.models.lm import Output
from tfs_jax.models.lm import Prompt
from tfs_jax.models.lm import Stages
from tfs_jax.models.lm import POSITION_MODES  # noqa: F401  (re-exported: the modes `positions` takes)
from tfs_jax.models.lm import check_logits
from tfs_jax.models.lm import check_positions
from tfs_jax.models.lm import kept_positions
from tfs_jax.models.lm import check_token_ids
from tfs_jax.models.lm import padded_prompt as _padded_prompt
from tfs_jax.models.lm import prune_spec as _prune_spec
from tfs_jax.models.qwen2_5_vl import model as _qwen
from tfs_jax.serving import compact
from tfs_jax.serving import prune_video_embeds

class Model(Stages):
    """A loaded InternVL (`tfs_jax.models.load`): `config`, `params`, stages.

    `prefill`, `decode`, `generate` and `output` are `lm.Stages`' (the one decoder,
    configured as Qwen3).
    """

    def __init__(self, config: InternVLConfig, params: dict):
        self.config = config
        self.params = params

    def vision(self, pixel_values, *, hidden_states: bool = False):
        """`(T, (g/2)^2, d)` float32 embeddings of `(T, C, S, S)` tiles (one per frame)."""
        return vision_tower(self.params, pixel_values, config=self.config, hidden_states=hidden_states)

    def prune_videos(self, video_embeds, frames_per_video, *, prune, retain_ratio=None, key=None, buckets=None):
        """Prune every video on its `(T, g/2, g/2)` grid; `None` when `prune` is None.

        Args:
          video_embeds: `(sum T, (g/2)^2, d)` or `(N, d)` embeddings of all frames, in order.
          frames_per_video: frames of each video, in order (sums to the frames).
          prune, retain_ratio, key, buckets: as in Qwen2.5-VL's `prune_videos`.

        Returns:
          `serving.PrunedVideos` whose `keep_mask` is over the prompt's placeholders.
        """
        config, method = _prune_spec(prune, retain_ratio)
        if config is None:
            return None
        side = self.config.vision.grid // 2
        grids = np.asarray([[t, side, side] for t in frames_per_video])
        embeds = video_embeds.reshape(-1, video_embeds.shape[-1])
        pruned = prune_video_embeds(embeds, grids, config, method=method, key=key, spatial_merge_size=1)
        return compact(pruned, buckets)

    def prompt(self, input_ids, *, video_embeds=None, pruned=None, positions: str = "renumber",
               bucket: int = BUCKET) -> Prompt:
        """The LM's input (module docstring).

        Args:
          input_ids: `(L,)` the unpruned prompt, every placeholder present.
          video_embeds: `(N, d)` (or `(T, n, d)`) unpruned embeddings (ignored with `pruned`).
          pruned: `prune_videos`' result, or None.
          positions: "renumber" (consecutive) or "original" (the unpruned positions, gaps).
          bucket: the padded length is a multiple of it.
        """
        check_positions(positions)
        c = self.config
        ids = check_token_ids(input_ids, c.text.vocab_size)
        slots, pos, delta = kept_positions(ids == c.image_token_id,
                                           None if pruned is None else pruned.keep_mask, positions)
        kept = ids[slots]
        video = pruned.embeds if pruned is not None else (
            None if video_embeds is None else np.reshape(video_embeds, (-1, np.shape(video_embeds)[-1])))
        rows, visual = _qwen._visual_rows(kept == c.image_token_id, np.zeros(len(kept), bool), video, None,
                                          width=c.text.hidden_size)
        return _padded_prompt(kept, rows, visual, np.repeat(pos[None], 3, axis=0), delta, bucket)

    def prepare(self, input_ids, *, pixel_values_videos=None, frames_per_video=None, prune=None,
                retain_ratio=None, key=None, positions: str = "renumber"):
        """`vision`, `prune_videos` and `prompt` in a row; returns the prompt and `keep`."""
        _prune_spec(prune, retain_ratio)
        check_positions(positions)
        frames = _check_request(self.config, input_ids, pixel_values_videos, frames_per_video)
        videos = None if pixel_values_videos is None else self.vision(pixel_values_videos)
        pruned = None
        if videos is not None and prune is not None:
            pruned = self.prune_videos(videos, frames, prune=prune, retain_ratio=retain_ratio, key=key)
        prompt = self.prompt(input_ids, video_embeds=videos, pruned=pruned, positions=positions)
        return prompt, None if pruned is None else np.asarray(pruned.keep_mask, bool)

    def forward(self, input_ids, *, pixel_values_videos=None, frames_per_video=None, prune=None,
                retain_ratio=None, positions: str = "renumber", logits: str = "all",
                hidden_states: bool = False, key=None) -> Output:
        """One prompt `(L,)` through the model; `lm.Output` (positions `(3, L')`)."""
        check_logits(logits)
        prompt, keep = self.prepare(input_ids, pixel_values_videos=pixel_values_videos,
                                    frames_per_video=frames_per_video, prune=prune, retain_ratio=retain_ratio,
                                    key=key, positions=positions)
        return self.output(prompt, keep, logits=logits, hidden_states=hidden_states)


def _check_request(config: InternVLConfig, input_ids, pixel_values_videos, frames_per_video) -> tuple[int, ...]:
    """Frames per video, checked against the tiles and the prompt's placeholder count."""
    ids = check_token_ids(input_ids, config.text.vocab_size)
    found = int(np.sum(ids == config.image_token_id))
    if pixel_values_videos is None:
        if frames_per_video is not None:
            raise ValueError(f"frames_per_video={frames_per_video!r} given without pixel_values_videos")
        if found:
            raise ValueError(f"input_ids hold {found} video placeholders (id {config.image_token_id}) "
                             "but no pixel_values_videos were given")
        return ()
    check_pixels(pixel_values_videos, config.vision)
    total = int(pixel_values_videos.shape[0])
    frames = (total,) if frames_per_video is None else tuple(int(f) for f in np.atleast_1d(frames_per_video))
    if sum(frames) != total or min(frames) < 1:
        raise ValueError(f"frames_per_video={list(frames)} must be positive and sum to the {total} tiles "
                         "of pixel_values_videos")
    want = total * config.tokens_per_tile
    if found != want:
        raise ValueError(f"input_ids hold {found} video placeholders (id {config.image_token_id}) but "
                         f"{total} frames need {want} ({config.tokens_per_tile} each)")
    return frames
