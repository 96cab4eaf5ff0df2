"""Qwen2.5-VL's `Model`: public stages, and `forward` / `generate` composed from them.

    vision -> prune_videos -> prompt -> prefill -> decode ...

- `vision`: patches to merged embeddings (`vision.vision_tower`), one program per grid;
- `prune_videos`: `serving.prune_video_embeds` on each video's merged `(t, h/2, w/2)` grid
  (TFS or a baseline of `baselines.RULES`), slots cut to a bucket by `serving.compact`;
- `prompt` (host, numpy): the pruned prompt's token ids and visual rows, M-RoPE positions
  from `serving.qwen_vl_rope_index(..., keep=...)` (the "qwen" convention: transformers
  4.51's rule, fractional `second_per_grid_ts` included), padded at the end to a bucket so
  one LM program serves every prompt length of a bucket (causal attention never lets a
  real token see the trailing padding);
- `prefill`: the one decoder over the prompt, logits and a KV cache of static length;
- `decode`: one token; the new token sits at cache slot `L'` + step and M-RoPE position
  `L' + rope_delta` + step on all three axes.

The LM's input, prefill, KV cache and greedy loop are `tfs_jax.models.lm`'s (shared by
every family). Images are embedded but never pruned. `prune=None` reproduces transformers 4.51.3.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from tfs_jax.checks import check_count
from tfs_jax.checks import check_grid_thw
from tfs_jax.models.lm import BUCKET  # noqa: F401  (re-exported: the bucket of every prompt)
from tfs_jax.models.lm import LOGITS_MODES  # noqa: F401
from tfs_jax.models.lm import KVCache  # noqa: F401  (re-exported, its home before lm.py)
from tfs_jax.models.lm import Output
from tfs_jax.models.lm import Prompt
from tfs_jax.models.lm import Stages
from tfs_jax.models.lm import _decode  # noqa: F401  (tests count its compilations here)
from tfs_jax.models.lm import _prefill  # noqa: F401
from tfs_jax.models.lm import check_logits
from tfs_jax.models.lm import check_token_ids
from tfs_jax.models.lm import padded_prompt
from tfs_jax.models.lm import prune_spec
from tfs_jax.models.qwen2_5_vl.config import Qwen25VLConfig
from tfs_jax.models.qwen2_5_vl.vision import vision_tower
from tfs_jax.serving import compact
from tfs_jax.serving import prune_video_embeds
from tfs_jax.serving import qwen_vl_rope_index


class Model(Stages):
    """A loaded Qwen2.5-VL (`tfs_jax.models.load`): `config`, `params`, stages."""

    def __init__(self, config: Qwen25VLConfig, params: dict):
        self.config = config
        self.params = params

    # ------------------------------------------------------------------ stages

    def vision(self, pixel_values, grid_thw, *, hidden_states: bool = False):
        """Merged embeddings `(N, d)` float32 of patches `(sum t*h*w, 1176)` (processor order)."""
        return vision_tower(self.params["visual"], pixel_values, grid_thw, config=self.config.vision,
                            hidden_states=hidden_states)

    def prune_videos(self, video_embeds, video_grid_thw, *, prune, retain_ratio=None, key=None,
                     buckets=None):
        """Prune every video on its merged grid; `None` when `prune` is None.

        Args:
          video_embeds: `(N, d)` merged embeddings of all videos, in order.
          video_grid_thw: `(V, 3)` rows (patches before the merge).
          prune: a `TFSConfig`, a baseline name of `tfs_jax.baselines.RULES`, or None.
          retain_ratio: the kept share; required for a baseline, replaces a TFSConfig's own.
          key: PRNG key of the random pruners (default `key(0)`).
          buckets: slot counts for `serving.compact` (default its own).

        Returns:
          `serving.PrunedVideos` whose `keep_mask` is over the `N` video placeholders.
        """
        config, method = prune_spec(prune, retain_ratio)
        if config is None:
            return None
        pruned = prune_video_embeds(video_embeds, video_grid_thw, config, method=method, key=key,
                                    spatial_merge_size=self.config.vision.spatial_merge_size)
        return compact(pruned, buckets)

    def prompt(self, input_ids, *, video_embeds=None, video_grid_thw=None, second_per_grid_ts=None,
               image_embeds=None, image_grid_thw=None, pruned=None, bucket: int = BUCKET) -> Prompt:
        """The LM's input (host-side bookkeeping; module docstring).

        Args:
          input_ids: `(L,)` the unpruned prompt, every placeholder present.
          video_embeds: `(N, d)` unpruned video embeddings (ignored when `pruned` is given).
          pruned: `prune_videos`' result, or None.
          image_embeds: `(M, d)` image embeddings. The grids as in `forward`;
            `second_per_grid_ts` defaults to 1 second per grid step, as transformers 4.51.3's.
          bucket: the padded length is a multiple of it.
        """
        c = self.config
        ids = check_token_ids(input_ids, c.text.vocab_size)
        keep = None if pruned is None else np.asarray(pruned.keep_mask, bool)
        if second_per_grid_ts is None and video_grid_thw is not None:
            second_per_grid_ts = np.ones(len(np.asarray(video_grid_thw)), np.float32)  # transformers' fallback
        positions, delta = qwen_vl_rope_index(
            ids, video_grid_thw, video_token_id=c.video_token_id,
            spatial_merge_size=c.vision.spatial_merge_size, second_per_grid_ts=second_per_grid_ts,
            tokens_per_second=float(c.vision.tokens_per_second), keep=keep,
            image_grid_thw=None if image_embeds is None else image_grid_thw,
            image_token_id=None if image_embeds is None else c.image_token_id)
        if keep is not None:
            ids = np.delete(ids, np.flatnonzero(ids == c.video_token_id)[~keep])
        video = pruned.embeds if pruned is not None else video_embeds
        rows, visual = _visual_rows(ids == c.video_token_id, ids == c.image_token_id, video, image_embeds,
                                    width=c.text.hidden_size)
        return padded_prompt(ids, rows, visual, positions, delta, check_count("bucket", bucket, 1))

    # ------------------------------------------------------------------ compositions

    def prepare(self, input_ids, *, pixel_values_videos=None, video_grid_thw=None,
                second_per_grid_ts=None, pixel_values=None, image_grid_thw=None, prune=None,
                retain_ratio=None, key=None) -> tuple[Prompt, np.ndarray | None]:
        """`vision`, `prune_videos` and `prompt` in a row; returns the prompt and `keep`."""
        prune_spec(prune, retain_ratio)
        _check_request(self.config, input_ids, pixel_values_videos, video_grid_thw,
                       pixel_values, image_grid_thw)
        videos = None if pixel_values_videos is None else self.vision(pixel_values_videos, video_grid_thw)
        images = None if pixel_values is None else self.vision(pixel_values, image_grid_thw)
        pruned = None
        if videos is not None and prune is not None:
            pruned = self.prune_videos(videos, video_grid_thw, prune=prune, retain_ratio=retain_ratio, key=key)
        prompt = self.prompt(input_ids, video_embeds=videos, video_grid_thw=video_grid_thw,
                             second_per_grid_ts=second_per_grid_ts, image_embeds=images,
                             image_grid_thw=image_grid_thw, pruned=pruned)
        return prompt, None if pruned is None else np.asarray(pruned.keep_mask, bool)

    def forward(self, input_ids, *, pixel_values_videos=None, video_grid_thw=None,
                second_per_grid_ts=None, pixel_values=None, image_grid_thw=None, prune=None,
                retain_ratio=None, logits: str = "all", hidden_states: bool = False, key=None) -> Output:
        """One prompt `(L,)` through the model (module docstring; `tfs_jax.models` API)."""
        check_logits(logits)
        prompt, keep = self.prepare(
            input_ids, pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts, pixel_values=pixel_values,
            image_grid_thw=image_grid_thw, prune=prune, retain_ratio=retain_ratio, key=key)
        return self.output(prompt, keep, logits=logits, hidden_states=hidden_states)


# ---------------------------------------------------------------------- helpers


def _check_request(config, input_ids, pixel_values_videos, video_grid_thw, pixel_values,
                   image_grid_thw) -> None:
    """Media given with their grids, and placeholder counts that match the grids."""
    ids = check_token_ids(input_ids, config.text.vocab_size)
    m = config.vision.spatial_merge_size
    for kind, pixels, grid, token in (("video", pixel_values_videos, video_grid_thw, config.video_token_id),
                                      ("image", pixel_values, image_grid_thw, config.image_token_id)):
        name = "pixel_values_videos" if kind == "video" else "pixel_values"
        if (pixels is None) != (grid is None):
            raise ValueError(f"{name} and {kind}_grid_thw must be given together (or neither)")
        rows = check_grid_thw(f"{kind}_grid_thw", grid, m)
        want = int(np.sum(np.prod(rows, axis=1))) // m ** 2
        found = int(np.sum(ids == token))
        if found != want:
            raise ValueError(f"input_ids hold {found} {kind} placeholders (id {token}) but "
                             f"{kind}_grid_thw {rows.tolist()} needs {want}")


def _visual_rows(is_video, is_image, video, images, *, width: int):
    """Which row of the visual array each prompt slot takes (-1: text), and that array
    (images first, then videos); too few embeddings for the placeholders raise."""
    for name, need, have in (("video", is_video.sum(), video), ("image", is_image.sum(), images)):
        held = 0 if have is None else int(np.shape(have)[0])
        if need > held:
            raise ValueError(f"the prompt keeps {need} {name} placeholders but only {held} "
                             f"{name} embeddings were given")
    rows = np.full(is_video.shape, -1, np.int64)
    rows[is_image] = np.arange(int(is_image.sum()))
    rows[is_video] = (0 if images is None else int(np.shape(images)[0])) + np.arange(int(is_video.sum()))
    parts = [jnp.asarray(p, jnp.float32) for p in (images, video) if p is not None]
    return rows, jnp.concatenate(parts) if parts else jnp.zeros((1, width), jnp.float32)


