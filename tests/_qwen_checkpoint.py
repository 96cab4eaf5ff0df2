"""Tiny random Qwen2.5-VL checkpoints written by transformers 4.51.3, and a prompt for them.

The configs exercise what transformers' own tester leaves at defaults: spatial merge 2,
`window_size=56` (2 x 2 merged tokens per window) on merged grids of 3 x 5 and 5 x 3 (so
every frame has several windows, partial ones at the right and bottom), a full-attention
block, an odd frame count, fractional `second_per_grid_ts`, two videos and an image in one
prompt. Every parameter is redrawn (transformers initialises biases to 0 and norms to 1,
which would leave the bias and norm name maps untested).
"""

from __future__ import annotations

import numpy as np

TRANSFORMERS_VERSION = "4.51.3"
VOCAB = 300
IMAGE, VIDEO, START, END = 290, 291, 292, 293
VIDEO_GRIDS = [[3, 6, 10], [2, 10, 6]]  # merged 3 x 5 (odd t) and 5 x 3
IMAGE_GRIDS = [[1, 4, 6]]
SECONDS = [0.5, 1.25]  # x tokens_per_second 2: steps 1 and 2.5 (fractional)

VISION = dict(depth=4, hidden_size=32, intermediate_size=48, num_heads=2, in_channels=3,
              patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2,
              window_size=56, out_hidden_size=64, fullatt_block_indexes=[2])
TEXT = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-6,
            max_position_embeddings=2048, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
            image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=START,
            vision_end_token_id=END, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def hf_config(*, tied: bool):
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(vision_config=dict(VISION), tie_word_embeddings=tied,
                            torch_dtype="float32", **TEXT)


def randomise(model, seed: int = 0) -> None:
    """Redraw every parameter: matrices N(0, 0.08^2), embeddings N(0, 0.5^2), biases
    N(0, 0.05^2), norm scales 1 + N(0, 0.1^2)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name or "ln_q" in name:
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.08 * noise)


def write_checkpoint(folder, *, tied: bool, seed: int = 0, shard_size: str = "300KB"):
    """Save a random tiny model with `save_pretrained` (sharded); return the torch model."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(hf_config(tied=tied)).eval()
    randomise(model, seed)
    model.save_pretrained(folder, max_shard_size=shard_size)
    return model


def _patches(grids, rng) -> np.ndarray:
    total = sum(t * h * w for t, h, w in grids)
    return rng.standard_normal((total, 3 * 2 * 14 * 14)).astype(np.float32)


def prompt_inputs(seed: int = 0) -> dict:
    """One prompt: text, video A, text, an image, text, video B, text."""
    rng = np.random.default_rng(seed)
    merged = lambda g: g[0] * g[1] * g[2] // 4
    ids = ([1, 5, 6, START] + [VIDEO] * merged(VIDEO_GRIDS[0]) + [END, 7, 8, START]
           + [IMAGE] * merged(IMAGE_GRIDS[0]) + [END, 9, START] + [VIDEO] * merged(VIDEO_GRIDS[1])
           + [END, 10, 11, 12])
    return dict(input_ids=np.asarray(ids, np.int64),
                pixel_values_videos=_patches(VIDEO_GRIDS, rng),
                video_grid_thw=np.asarray(VIDEO_GRIDS, np.int64),
                second_per_grid_ts=np.asarray(SECONDS, np.float32),
                pixel_values=_patches(IMAGE_GRIDS, rng),
                image_grid_thw=np.asarray(IMAGE_GRIDS, np.int64))


def torch_inputs(inputs: dict) -> dict:
    """The same prompt as transformers takes it (batch of one)."""
    import torch

    out = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}
    out["input_ids"] = out["input_ids"][None]
    out["second_per_grid_ts"] = out["second_per_grid_ts"].tolist()
    return out
