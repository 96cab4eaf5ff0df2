"""Tiny random LLaVA-OneVision checkpoints written by transformers 4.51.3, and a prompt.

The configs exercise what transformers' own tester leaves at defaults: a feature layer other
than the last (-2 of 3; a list [1, -1] in the second checkpoint), an odd patch grid (60 px /
8 = 7, pooled to ceil(7/2) = 4, as 27 -> 14 at 384 px: the bilinear weights are uneven),
several frames, two videos, text on both sides of each video, SigLIP's tanh GELU and the
projector's erf GELU, sharded files, tied and untied LM heads. Every parameter is redrawn
(`_qwen_checkpoint.randomise`).
"""

from __future__ import annotations

import numpy as np

from tests._qwen_checkpoint import randomise

TRANSFORMERS_VERSION = "4.51.3"
VOCAB = 160
IMAGE, VIDEO = 150, 151
FRAMES = 3
IMAGE_SIZE, PATCH = 60, 8
POOLED = 4  # ceil((60 // 8) / 2)

VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              image_size=IMAGE_SIZE, patch_size=PATCH, vision_use_head=False)
TEXT = dict(vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-6,
            max_position_embeddings=1024, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_config(*, tied: bool, feature_layer=-2):
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(vision_config=dict(VISION), text_config=dict(TEXT, tie_word_embeddings=tied),
                                image_token_index=IMAGE, video_token_index=VIDEO,
                                vision_feature_layer=feature_layer, tie_word_embeddings=tied,
                                torch_dtype="float32")


def write_checkpoint(folder, *, tied: bool, feature_layer=-2, seed: int = 0, shard_size: str = "100KB"):
    """Save a random tiny model with `save_pretrained` (sharded); return the torch model."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(hf_config(tied=tied, feature_layer=feature_layer)).eval()
    randomise(model, seed)
    model.save_pretrained(folder, max_shard_size=shard_size)
    return model


def video_tokens(frames: int = FRAMES) -> int:
    """Placeholders of one video: the pooled grid of every frame, then the newline."""
    return frames * POOLED * POOLED + 1


def prompt_inputs(seed: int = 0, videos: int = 2) -> dict:
    """One prompt: text, video, text, video, text (`videos` of them, `FRAMES` frames each)."""
    rng = np.random.default_rng(seed)
    ids = [1, 5, 6]
    for v in range(videos):
        ids += [VIDEO] * video_tokens() + [7 + v, 8 + v]
    ids += [20, 21, 22]
    pixels = rng.standard_normal((videos, FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    return dict(input_ids=np.asarray(ids, np.int64), pixel_values_videos=pixels)


def torch_inputs(inputs: dict) -> dict:
    """The same prompt as transformers takes it (batch of one)."""
    import torch

    return dict(input_ids=torch.from_numpy(inputs["input_ids"])[None],
                pixel_values_videos=torch.from_numpy(inputs["pixel_values_videos"]))
