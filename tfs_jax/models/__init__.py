"""Real models: a checkpoint folder in, logits and greedy answers out, pruned or not.

    model = tfs_jax.models.load("Qwen2.5-VL-7B-Instruct")          # config.json + safetensors
    out = model.forward(input_ids, pixel_values_videos=pv, video_grid_thw=grid,
                        second_per_grid_ts=sec, prune=tfs_jax.TFSConfig(retain_ratio=0.25))
    ids = model.generate(input_ids, pixel_values_videos=pv, video_grid_thw=grid,
                         second_per_grid_ts=sec, max_new_tokens=64, eos_token_id=eos)

Families (one folder each: its config, weight-name map, vision tower and `Model`):
`qwen2_5_vl` (Qwen2.5-VL), `llava_onevision` (LLaVA-OneVision: SigLIP, 2x2-pooled video
frames, Qwen2 with 1-D RoPE), `internvl` (InternVL3.5: InternViT, one 448-px tile per frame,
pixel-shuffled, Qwen3 with 1-D RoPE). Every family's LM is the one decoder of
`tfs_jax.models.decoder`; the LM's input, prefill, KV cache and greedy loop are
`tfs_jax.models.lm`'s.

The public API (stable; `tfs-jax ask` and the benchmark compose the stages), as
Qwen2.5-VL's `Model` spells it (the other families take their own media arguments, e.g.
`frames_per_video`, and a `positions` mode):

- `load(path, *, dtype=None, progress=False) -> Model`: reads `config.json` and the
  safetensors shards (`model.safetensors` or `model.safetensors.index.json`), shard by
  shard; every tensor's name, shape and dtype is checked. `dtype` (e.g. `jnp.bfloat16`)
  casts floating weights; `None` keeps the checkpoint's; `progress` shows a tqdm bar over
  the tensors. Bad folders raise a one-line `ValueError`.
- `Model.config`, `Model.params` (a pytree: "visual", "embed", "layers", "final_norm",
  "lm_head" when untied).
- Stages (each public, documented; `forward` and `generate` are their composition):
  - `Model.vision(pixel_values, grid_thw) -> (N, D) float32`: patches `(sum t*h*w, 1176)`
    in the processor's order and their `(t, h, w)` grid rows, to merged embeddings
    (`N = sum t*h*w / m^2`), in the processor's order.
  - `Model.prune_videos(video_embeds, video_grid_thw, *, prune, retain_ratio=None, key=None)
    -> PrunedVideos | None`: `tfs_jax.serving.prune_video_embeds` on every video's merged
    grid, slots cut by `serving.compact`; `prune=None` gives `None`.
  - `Model.prompt(input_ids, *, video_embeds=None, video_grid_thw=None,
    second_per_grid_ts=None, image_embeds=None, image_grid_thw=None, pruned=None)
    -> Prompt`: the LM's input, the pruned prompt padded at the end to a bucket `B`:
    `ids (B,)`, `rows (B,)` (the row of `visual` a slot takes, -1 for text), `visual (R, d)`
    embeddings, `positions (3, B)`, `length` L' and `rope_delta` (`keep` is `prepare`'s).
  - `Model.prefill(prompt, *, logits="last", cache_len=None, hidden_states=False)
    -> (logits, cache, hidden)`: logits `(V,)` of the last prompt token ("last") or
    `(L', V)` ("all"); a `KVCache` of static length `cache_len` (None: no cache); every
    layer's input and output `(layers + 1, L', d)` when asked.
  - `Model.decode(cache, token) -> (logits (V,), cache)`: one greedy step.
  - `Model.prepare(input_ids, <forward's media and prune arguments>) -> (Prompt, keep)`:
    `vision`, `prune_videos` and `prompt` in a row.
  - `Model.forward(input_ids, *, pixel_values_videos=None, video_grid_thw=None,
    second_per_grid_ts=None, pixel_values=None, image_grid_thw=None, prune=None,
    retain_ratio=None, logits="all", hidden_states=False) -> Output`.
  - `Model.generate(<forward's inputs>, *, max_new_tokens, eos_token_id=None, prune=None,
    retain_ratio=None) -> (n,) int32 new token ids`.
- `Output(logits, positions, rope_delta, keep, hidden_states)`: logits `(L', V)` or `(V,)`
  with `logits="last"`, positions `(3, L')`, `rope_delta` int, `keep` `(N,)` bool over the
  video placeholders in prompt order (None unpruned), hidden states or None.

`import tfs_jax.models` is light (numpy, jax): a family's modules load on first use.
"""

from __future__ import annotations

import importlib

from tfs_jax.models.loader import SUPPORTED_MODEL_TYPES
from tfs_jax.models.loader import load

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "load",
    "Model",
    "Output",
    "Prompt",
    "KVCache",
]

_LAZY = {"Model": "tfs_jax.models.qwen2_5_vl.model",
         **{name: "tfs_jax.models.lm" for name in ("Output", "Prompt", "KVCache")}}
SUBPACKAGES = ("decoder", "lm", "loader", "qwen2_5_vl", "llava_onevision", "internvl")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in SUBPACKAGES:
        return importlib.import_module(f"tfs_jax.models.{name}")
    raise AttributeError(f"module 'tfs_jax.models' has no attribute {name!r}")
