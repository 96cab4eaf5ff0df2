"""What `tfs-jax ask` needs of LLaVA-OneVision (the family entry of `tfs_jax.ask.FAMILIES`).

- `request`: `FRAMES` frames spread evenly over the clip (`video.sample_video` with its
  minimum and maximum both `FRAMES`: indices `linspace(0, N - 1, n)` rounded, all frames
  of a clip shorter than that, an even count), `processor.preprocess_video` with the
  folder's `preprocessor_config.json` (its size must be the tower's), the chat template
  rendered and its `<video>` expanded to `T q q + 1` placeholders, as
  `LlavaOnevisionProcessor` does (the pooled grid of every frame, then the newline);
- `vision`, `prune`, `prompt`: `Model.vision`, `Model.prune_videos`, `Model.prompt`.
"""

from __future__ import annotations

import json
import pathlib

from tfs_jax.ask import Request
from tfs_jax.ask import status

FRAMES = 32  # LLaVA-OneVision's video setting (its paper and lmms-eval: 32 frames)
VIDEO_TOKEN = "<video>"


def request(model_dir, video_path, question: str, chat, *, progress: bool) -> Request:
    """The prompt's `(L,)` ids (placeholders expanded) and `pixel_values_videos`."""
    from tfs_jax import video
    from tfs_jax.models import chat as chat_module
    from tfs_jax.models.llava_onevision import processor
    from tfs_jax.models.llava_onevision.config import LlavaOnevisionConfig

    # models.load read and checked config.json already; this is the same file.
    config = LlavaOnevisionConfig.from_dict(json.loads((pathlib.Path(model_dir) / "config.json").read_text()))
    settings = processor.ProcessorConfig.from_dir(model_dir)
    side = config.vision.image_size
    if (settings.height, settings.width) != (side, side):
        raise ValueError(f"preprocessor_config.json's size {settings.height}x{settings.width} is not the "
                         f"vision tower's {side}x{side}")
    sampled = video.sample_video(video_path, min_frames=FRAMES, max_frames=FRAMES, progress=progress)
    pixels = processor.preprocess_video(sampled.frames, config=settings)
    q = config.vision.pooled
    per_video = len(sampled.frames) * q * q
    text = chat.render(chat_module.video_question(question))
    if text.count(VIDEO_TOKEN) != 1:
        raise ValueError(f"the chat template writes {text.count(VIDEO_TOKEN)} {VIDEO_TOKEN} for one video")
    text = text.replace(VIDEO_TOKEN, VIDEO_TOKEN * (per_video + 1))
    status(f"{pathlib.Path(video_path).name}: {len(sampled.frames)} of {sampled.source_frames} frames, "
           f"resized to {side}x{side}, {per_video} video tokens + 1 newline", progress)
    return Request(input_ids=chat.encode(text), media=pixels, total=per_video)


def vision(model, media):
    """Pooled video features `(1, T, q, q, d)`."""
    return model.vision(media)


def prune(model, embeds, media, *, prune, retain_ratio):
    """`Model.prune_videos` (None when unpruned); its `keep_mask` is over the grid tokens."""
    return model.prune_videos(embeds, prune=prune, retain_ratio=retain_ratio)


def prompt(model, input_ids, embeds, media, pruned):
    """`Model.prompt` of the (pruned) video, kept tokens renumbered."""
    return model.prompt(input_ids, video_embeds=embeds, pruned=pruned)
