"""What `tfs-jax ask` needs of Qwen2.5-VL: a video and a question to the model's inputs, and
the model's stages called with them (the family entry of `tfs_jax.ask.FAMILIES`).

- `request`: frames sampled as qwen-vl-utils 0.0.14 samples them (`video.sample_video`),
  `processor.preprocess_video` with the folder's `preprocessor_config.json` (its
  `max_pixels` capped by qwen-vl-utils' per-frame video budget), the chat template
  rendered and `<|video_pad|>` expanded to `t h w / m^2` placeholders;
- `vision`, `prune`, `prompt`: `Model.vision`, `Model.prune_videos`, `Model.prompt` on them.
"""

from __future__ import annotations

import pathlib

from tfs_jax.ask import Request
from tfs_jax.ask import status


def request(model_dir, video_path, question: str, chat, *, progress: bool) -> Request:
    """The prompt's `(L,)` ids (placeholders expanded) and the processor's video inputs."""
    from tfs_jax import video
    from tfs_jax.models import chat as chat_module
    from tfs_jax.models.qwen2_5_vl import processor

    config = processor.ProcessorConfig.from_dir(model_dir)
    sampled = video.sample_video(video_path, progress=progress)
    # The processor's budget, capped by qwen-vl-utils' per-frame one so that a long clip
    # stays within its ~115K-token total (frames are never scaled up to its floor).
    cap = min(config.max_pixels, processor.video_max_pixels(len(sampled.frames)))
    inputs = processor.preprocess_video(sampled.frames, fps=sampled.fps, config=config,
                                        max_pixels=max(cap, config.min_pixels))
    text = chat.render(chat_module.video_question(question))
    text = chat_module.expand_placeholders(text, video_grid_thw=inputs.video_grid_thw,
                                           merge_size=config.merge_size)
    t, h, w = inputs.video_grid_thw[0].tolist()
    total = t * h * w // config.merge_size ** 2
    status(f"{pathlib.Path(video_path).name}: {len(sampled.frames)} of {sampled.source_frames} "
           f"frames at {sampled.fps:.3g} fps, resized to {h * config.patch_size}x"
           f"{w * config.patch_size}, {total} video tokens", progress)
    return Request(input_ids=chat.encode(text), media=inputs, total=total)


def vision(model, media):
    """Merged video embeddings `(N, d)`."""
    return model.vision(media.pixel_values_videos, media.video_grid_thw)


def prune(model, embeds, media, *, prune, retain_ratio):
    """`Model.prune_videos` (None when unpruned); its `keep_mask` is over the `N` tokens."""
    return model.prune_videos(embeds, media.video_grid_thw, prune=prune, retain_ratio=retain_ratio)


def prompt(model, input_ids, embeds, media, pruned):
    """`Model.prompt` of the (pruned) video."""
    return model.prompt(input_ids, video_embeds=embeds, video_grid_thw=media.video_grid_thw,
                        second_per_grid_ts=[media.second_per_grid_ts], pruned=pruned)
