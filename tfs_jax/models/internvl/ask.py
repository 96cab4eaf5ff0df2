"""What `tfs-jax ask` needs of InternVL (the family entry of `tfs_jax.ask.FAMILIES`).

- `request`: `FRAMES` frames spread evenly over the clip (`video.sample_video` with its
  minimum and maximum both `FRAMES`), one tile per frame by `processor.preprocess_frames`
  with the folder's `preprocessor_config.json` (its size must be the tower's), the chat
  template rendered and its `<video>` expanded as `InternVLProcessor` does:
  `Frame{i+1}: <img>` + `<IMG_CONTEXT>` x tokens per tile + `</img>`, frames joined by `\\n`;
- `vision`, `prune`, `prompt`: `Model.vision`, `Model.prune_videos` (one video of `T`
  frames), `Model.prompt` (kept tokens renumbered).
"""

from __future__ import annotations

import json
import pathlib

FRAMES = 8  # InternVL's video evaluation default (lmms-eval, the model card: 8 frames)
VIDEO_TOKEN = "<video>"


def expand_video(text: str, frames: int, tokens_per_tile: int) -> str:
    """`text` with its one `<video>` replaced as `InternVLProcessor` does; ValueError otherwise."""
    if text.count(VIDEO_TOKEN) != 1:
        raise ValueError(f"the chat template writes {text.count(VIDEO_TOKEN)} {VIDEO_TOKEN} for one video")
    tile = "<img>" + "<IMG_CONTEXT>" * tokens_per_tile + "</img>"
    return text.replace(VIDEO_TOKEN, "\n".join(f"Frame{i + 1}: {tile}" for i in range(frames)))


def request(model_dir, video_path, question: str, chat, *, progress: bool):
    """The prompt's `(L,)` ids (placeholders expanded) and `pixel_values_videos` `(T, 3, S, S)`,
    as a `tfs_jax.ask.Request`."""
    from tfs_jax import video
    from tfs_jax.ask import Request  # the family registry's types (imported late: ask imports us)
    from tfs_jax.ask import status
    from tfs_jax.models import chat as chat_module
    from tfs_jax.models.internvl import processor
    from tfs_jax.models.internvl.config import InternVLConfig

    config = InternVLConfig.from_dict(json.loads((pathlib.Path(model_dir) / "config.json").read_text()))
    settings = processor.ProcessorConfig.from_dir(model_dir)
    if settings.size != config.vision.image_size:
        raise ValueError(f"preprocessor_config.json's size {settings.size} is not the vision tower's "
                         f"{config.vision.image_size}")
    sampled = video.sample_video(video_path, min_frames=FRAMES, max_frames=FRAMES, progress=progress)
    pixels = processor.preprocess_frames(sampled.frames, config=settings)
    frames, per_tile = len(sampled.frames), config.tokens_per_tile
    text = expand_video(chat.render(chat_module.video_question(question)), frames, per_tile)
    status(f"{pathlib.Path(video_path).name}: {frames} of {sampled.source_frames} frames, resized to "
           f"{settings.size}x{settings.size}, {frames * per_tile} video tokens", progress)
    return Request(input_ids=chat.encode(text), media=pixels, total=frames * per_tile)


def vision(model, media):
    """Projected frame features `(T, tokens per tile, d)`."""
    return model.vision(media)


def prune(model, embeds, media, *, prune, retain_ratio):
    """`Model.prune_videos` over the one video (None when unpruned)."""
    return model.prune_videos(embeds, (len(media),), prune=prune, retain_ratio=retain_ratio)


def prompt(model, input_ids, embeds, media, pruned):
    """`Model.prompt` of the (pruned) video, kept tokens renumbered."""
    return model.prompt(input_ids, video_embeds=embeds, pruned=pruned)
