"""What `experiments/bench_table2.py` times: each family's components from `tfs_jax.models`
(the code a user runs) at a model's real widths, the pruners on video-like tokens, and the
timing loop (interleaved rounds).

Each timed piece is a `Job`: a jitted function and its arguments (parameters are arguments,
never closed over, so XLA does not fold gigabytes of constants into the program). A piece
the models package lacks is reported as missing, never replaced.

The families differ in four places, each a function here that dispatches on `model_type`:
the prompt's shape (`prompt_shape`), its ids (`prompt_ids`), how the pruner and the prompt
builder are called (`pruner_job`, `build_prompt`) and the vision tower's parts
(`vision_jobs`, `vision_counts`). The LM (`lm_jobs`) is the one decoder of every family.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import statistics
import sys
import time
from typing import Callable

import numpy as np

from experiments.lib import common
from experiments.lib.common import timed


# Each model's config.json fields that `config_from_dict` reads, and a toy of each layout for
# the smoke run. The hub's files cannot be read from this machine: the widths and layer
# counts are the published ones; the vocabulary sizes and placeholder ids (which change only
# the LM head's size) are not checked here.
_QWEN25_7B = {
    "model_type": "qwen2_5_vl", "hidden_size": 3584, "intermediate_size": 18944,
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "vocab_size": 152064, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "tie_word_embeddings": False, "image_token_id": 151655, "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_channels": 3, "patch_size": 14,
                      "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                      "out_hidden_size": 3584, "tokens_per_second": 2}}
# LLaVA-OneVision-7B: SigLIP so400m/14 at 384 px (26 layers, the feature layer the last),
# a Qwen2-7B LM (the widths of Qwen2.5-VL-7B's LM).
_LLAVA_OV_7B = {
    "model_type": "llava_onevision", "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full", "projector_hidden_act": "gelu",
    "image_token_index": 151646, "video_token_index": 151647,
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152,
                      "intermediate_size": 4304, "num_hidden_layers": 26,
                      "num_attention_heads": 16, "image_size": 384, "patch_size": 14,
                      "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
                      "vision_use_head": False},
    "text_config": {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
                    "num_hidden_layers": 28, "num_attention_heads": 28,
                    "num_key_value_heads": 4, "vocab_size": 152128, "rope_theta": 1000000.0,
                    "rms_norm_eps": 1e-6, "tie_word_embeddings": False}}
# InternVL3.5-8B: InternViT-300M at 448 px (24 layers, q/k/v biases), a Qwen3-8B LM.
_INTERNVL35_8B = {
    "model_type": "internvl", "image_token_id": 151671, "vision_feature_layer": -1,
    "downsample_ratio": 0.5, "projector_hidden_act": "gelu",
    "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                      "intermediate_size": 4096, "attention_bias": True, "use_qk_norm": False,
                      "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "image_size": 448,
                      "patch_size": 14, "use_mean_pooling": True},
    "text_config": {"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288,
                    "num_hidden_layers": 36, "num_attention_heads": 32,
                    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
                    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                    "tie_word_embeddings": False}}
CONFIGS = {
    "qwen2.5-vl-7b": _QWEN25_7B,
    "llava-onevision-7b": _LLAVA_OV_7B,
    "internvl3.5-8b": _INTERNVL35_8B,
    "tiny": {
        "model_type": "qwen2_5_vl", "hidden_size": 64, "intermediate_size": 128,
        "num_attention_heads": 4, "num_hidden_layers": 3, "num_key_value_heads": 2,
        "vocab_size": 512, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "tie_word_embeddings": False, "image_token_id": 501, "video_token_id": 500,
        "vision_start_token_id": 502,
        "vision_config": {"depth": 4, "hidden_size": 32, "intermediate_size": 48,
                          "num_heads": 2, "in_channels": 3, "patch_size": 14,
                          "spatial_merge_size": 2, "temporal_patch_size": 2,
                          "window_size": 112, "fullatt_block_indexes": [1, 3],
                          "out_hidden_size": 64, "tokens_per_second": 2}},
    "tiny-llava": {
        "model_type": "llava_onevision", "vision_feature_layer": -2,
        "image_token_index": 501, "video_token_index": 500,
        "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3,
                          "num_attention_heads": 2, "image_size": 224, "patch_size": 14,
                          "vision_use_head": False},
        "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
                        "num_attention_heads": 4, "num_key_value_heads": 2,
                        "vocab_size": 512}},
    "tiny-internvl": {
        "model_type": "internvl", "image_token_id": 500,
        "vision_config": {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
                          "intermediate_size": 48, "attention_bias": True, "image_size": 224,
                          "patch_size": 14},
        "text_config": {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128,
                        "num_hidden_layers": 3, "num_attention_heads": 4,
                        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}},
}
# InternVL's per-frame text around the 256 `<IMG_CONTEXT>`s, `Frame{i}: <img>` ... `</img>`,
# frames joined by a newline, as token counts: an estimate of the Qwen tokenizer's split
# ("Frame", each digit of i, ":", " ", "<img>"; "</img>"; "\n"), which this machine cannot
# check (no real tokenizer here). It shifts every length of a prompt alike (32 frames: 255
# tokens beside 8,192).
FRAME_TEXT = {"before": lambda i: 4 + len(str(i)), "after": 1, "between": 1}


def config_of(name: str):
    """`CONFIGS[name]` parsed by its family's `config_from_dict`."""
    return family(name).config_from_dict(CONFIGS[name])


def family(name: str):
    """The `tfs_jax.models` family module of `CONFIGS[name]`."""
    return importlib.import_module(f"tfs_jax.models.{CONFIGS[name]['model_type']}")


def sizes(name: str) -> dict:
    """The family, the tower's and the LM's widths and counts, from `CONFIGS[name]`."""
    c = config_of(name)
    t, v = c.text, c.vision
    lm = dict(hidden=t.hidden_size, heads=t.num_heads, kv_heads=t.num_kv_heads,
              head_dim=t.head_dim, intermediate=t.intermediate_size, layers=t.num_layers,
              vocab=t.vocab_size)
    kind = CONFIGS[name]["model_type"]
    if kind == "qwen2_5_vl":
        vision = dict(hidden=v.hidden_size, heads=v.num_heads, intermediate=v.intermediate_size,
                      depth=v.depth, fullatt=tuple(v.fullatt_block_indexes), window=v.window_size,
                      patch=v.patch_size, temporal_patch=v.temporal_patch_size,
                      merge=v.spatial_merge_size, out=v.out_hidden_size)
    elif kind == "llava_onevision":
        vision = dict(hidden=v.hidden_size, heads=v.num_heads, intermediate=v.intermediate_size,
                      depth=c.tower_depth, image_size=v.image_size, patch=v.patch_size,
                      grid=v.grid, pooled=v.pooled)
    else:
        vision = dict(hidden=v.hidden_size, heads=v.num_heads, intermediate=v.intermediate_size,
                      depth=c.feature_depth, image_size=v.image_size, patch=v.patch_size,
                      grid=v.grid, tokens_per_frame=c.tokens_per_tile)
    return {"family": kind, "vision": vision, "lm": lm}


@dataclasses.dataclass
class Job:
    """One timed piece: `fn(*args)`, its compile time and its timed runs.

    `fn` is either a plain call as a user makes it (the pruner: host checks, dispatch and
    all), warmed by `warm`, or a `jax.jit` function compiled ahead of time by `time_jobs`.
    """

    fn: Callable
    args: tuple
    compile_s: float | None = None  # None: compile it in `time_jobs`
    runs_s: list = dataclasses.field(default_factory=list)


def warm(fn, *args) -> tuple[Job, object]:
    """A `Job` of a plain call, run once now (the compile, with one run); and its output."""
    out, seconds = timed(fn, *args)
    return Job(fn, args, compile_s=seconds), out


def compile_jobs(jobs: dict[str, Job]) -> None:
    """Compile every jitted job ahead of time (`lower(...).compile()`: no run)."""
    for name, job in jobs.items():
        if job.compile_s is None:
            start = time.perf_counter()
            job.fn = job.fn.lower(*job.args).compile()
            job.compile_s = time.perf_counter() - start
            print(f"compiled {name} ({job.compile_s:.1f} s)", file=sys.stderr, flush=True)


def time_jobs(jobs: dict[str, Job], rounds: int, seed: int, *, cheap_s: float = 5.0,
              cheap_rounds: int = 0) -> None:
    """`rounds` rounds, each running every job once in a fresh random order, so that load
    drift on a shared machine spreads over all of them; then rounds up to `cheap_rounds`
    of the jobs whose first run took under `cheap_s` (most pruners, the patch embedding,
    the prefill's rest: more runs cost little; the threshold is loose because a loaded
    machine slows a first run several times). Fills `runs_s` in place; compiles first."""
    compile_jobs(jobs)
    order = np.random.default_rng(seed)
    names = list(jobs)
    for i in range(max(rounds, cheap_rounds)):
        start = time.perf_counter()
        for j in order.permutation(len(names)):
            job = jobs[names[j]]
            if i < rounds or job.runs_s[0] < cheap_s:
                job.runs_s.append(timed(job.fn, *job.args)[1])
        print(f"round {i + 1}/{max(rounds, cheap_rounds)}: {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)


def spread(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs),
            "runs": list(runs)}


# ----------------------------------------------------------------------------------------
# Prompts and inputs


def prompt_shape(name: str, frames: int, *, image_size: int, prefix_len: int,
                 suffix_len: int) -> dict:
    """One prompt of `frames` frames: the pruned grid, the patches, and the token counts.

    `video_tokens` are the prompt's video placeholders, `prunable_tokens` those the pruner
    sees (LLaVA-OneVision's closing `image_newline` is never pruned); `text_tokens` the
    rest (InternVL's `Frame{i}: <img>` ... `</img>` text among them). `image_size` is
    Qwen2.5-VL's frame side (its processor resizes freely); the other families take their
    tower's square input."""
    s = sizes(name)
    v, kind = s["vision"], s["family"]
    text = prefix_len + suffix_len
    if kind == "qwen2_5_vl":
        side = image_size // v["patch"]
        if image_size % (v["patch"] * v["merge"]) or frames % v["temporal_patch"]:
            raise ValueError(f"image_size={image_size} must be a multiple of "
                             f"{v['patch'] * v['merge']} and frames={frames} of "
                             f"{v['temporal_patch']}")
        t, grid = frames // v["temporal_patch"], side // v["merge"]
        video = prunable = t * grid * grid
        patches, grid_thw = t * side * side, [t, side, side]
    elif kind == "llava_onevision":
        t, grid, image_size = frames, v["pooled"], v["image_size"]
        prunable = t * grid * grid
        video = prunable + 1  # the video's image_newline, after its frames
        patches, grid_thw = t * v["grid"] ** 2, [t, v["grid"], v["grid"]]
    else:
        t, grid, image_size = frames, v["grid"] // 2, v["image_size"]
        video = prunable = t * grid * grid
        patches, grid_thw = t * v["grid"] ** 2, [t, v["grid"], v["grid"]]
        text += frame_text_tokens(frames)
    return {"frames": frames, "image_size": image_size, "grid_thw": grid_thw,
            "merged_grid": [t, grid, grid], "patches": patches, "video_tokens": video,
            "prunable_tokens": prunable, "text_tokens": text, "sequence_tokens": video + text}


def frame_text_tokens(frames: int) -> int:
    """InternVL's text around `frames` frames' tokens (`FRAME_TEXT`)."""
    return (sum(FRAME_TEXT["before"](i) for i in range(1, frames + 1))
            + frames * FRAME_TEXT["after"] + (frames - 1) * FRAME_TEXT["between"])


def prompt_ids(name: str, config, shape: dict, prefix_len: int, suffix_len: int) -> np.ndarray:
    """`(L,)` int32: text, each video placeholder in the family's layout, text. The text ids
    are arbitrary ids that are no placeholder: they change no time."""
    counter = itertools.count()

    def text(n):  # ids 1..400: below every family's placeholder ids
        return np.asarray([1 + next(counter) % 400 for _ in range(n)], np.int32)

    kind = CONFIGS[name]["model_type"]
    if kind == "internvl":
        per = config.tokens_per_tile
        body = []
        for i in range(1, shape["frames"] + 1):
            body += [text(FRAME_TEXT["before"](i)), np.full(per, config.image_token_id, np.int32),
                     text(FRAME_TEXT["after"])]
            if i < shape["frames"]:
                body.append(text(FRAME_TEXT["between"]))
    else:
        body = [np.full(shape["video_tokens"], config.video_token_id, np.int32)]
    return np.concatenate([text(prefix_len), *body, text(suffix_len)])


def video_tokens(clip: str, encoder: str, t: int, grid: int, dim: int, seed: int) -> np.ndarray:
    """`(t * grid * grid, dim)` float32 stand-ins for the pruned grid, raster order: a
    bundled clip's `t` frames (uniformly sampled) through `encoder` (DINOv2-S/14 or pixel
    patches: a 16 x 16 grid at 224 px; a smaller `grid` is the 16 x 16 one resized
    bilinearly, as LLaVA-OneVision's pooling resizes its 27 x 27 grid), projected to `dim`
    by a fixed random Gaussian matrix (scaled by `1/sqrt(D_in)`, which keeps cosine
    similarities about as they were: the pruners see the clip's structure at the LM's
    width)."""
    from tfs_jax.models.llava_onevision.vision import bilinear_matrix

    tokens = common.clip_data(clip, t, encoder, reference=False)["tokens"]
    side = tokens.shape[1]
    if tokens.shape[1] != tokens.shape[2] or side < grid:
        raise ValueError(f"{encoder} gives a {tokens.shape[1:3]} grid, the prompt needs "
                         f"{grid} x {grid}: at most {side} on a side")
    if side != grid:
        m = bilinear_matrix(side, grid)
        tokens = np.einsum("ai,tijd,bj->tabd", m, tokens, m)
    d_in = tokens.shape[-1]
    proj = np.random.default_rng(seed).standard_normal((d_in, dim)).astype(np.float32)
    return (tokens.reshape(-1, d_in) @ (proj / np.sqrt(d_in))).astype(np.float32)


# ----------------------------------------------------------------------------------------
# The model under test (tfs_jax.models): one LM layer, one vision block


def _cut(config):
    """`config` with one LM layer and one vision block, the LM head tied to the embedding."""
    text = dataclasses.replace(config.text, num_layers=1)
    kind = config.model_type
    if kind == "qwen2_5_vl":
        vision = dataclasses.replace(config.vision, depth=1, fullatt_block_indexes=())
        return dataclasses.replace(config, text=text, vision=vision, tie_word_embeddings=True)
    if kind == "llava_onevision":
        vision = dataclasses.replace(config.vision, num_layers=1, use_head=False)
        return dataclasses.replace(config, text=text, vision=vision, tie_word_embeddings=True,
                                   feature_layers=(1,) * len(config.feature_layers))
    vision = dataclasses.replace(config.vision, depth=1)
    return dataclasses.replace(config, text=text, vision=vision, tie_word_embeddings=True,
                               vision_feature_layer=-1)


def bench_model(name: str, seed: int):
    """`(full config, Model)`: a `tfs_jax.models` Model of `CONFIGS[name]` cut to one LM
    layer and one vision block, random float32 parameters (N(0, 0.02^2), norms too), built
    through the family's own name map (`expected_tensors`, `tree_slot`, `convert`), so the
    pytree is the one `load` gives. Its LM head is tied to the embedding: the same
    `(V, d)` matmul as an untied head, and 2 GB less memory at 7B width."""
    import jax
    import jax.numpy as jnp

    fam, full = family(name), config_of(name)
    small = _cut(full)
    leaves = {}
    for tensor, shape in fam.expected_tensors(small).items():
        path, index, how = fam.tree_slot(tensor)
        shape = fam.convert(np.broadcast_to(np.float32(0), shape), how).shape
        leaves[path] = (1, *shape) if index is not None else shape
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    params = {}
    for key, (path, shape) in zip(keys, leaves.items()):
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = 0.02 * jax.random.normal(key, shape, jnp.float32)
    return full, fam.Model(small, params)


def family_embeds(model, embeds, shape: dict):
    """The pruner's input as the family's `prune_videos` takes it: `(N, d)`, or LLaVA-
    OneVision's `(1, T, q, q, d)`."""
    if model.config.model_type == "llava_onevision":
        return embeds.reshape(1, *shape["merged_grid"], embeds.shape[-1])
    return embeds


def pruner_job(model, embeds, shape: dict, method: str, ratio: float, seed: int):
    """`Model.prune_videos`, as `forward` calls it (`serving.prune_video_embeds`: `tfs_prune`
    or `baselines.prune` on the pruned grid and the gather of the kept embeddings; then
    `serving.compact`, the kept tokens into the smallest bucket of slots, which reads the
    kept count on the host). Returns the warmed job and its `PrunedVideos`."""
    import jax

    from tfs_jax import TFSConfig

    prune = TFSConfig(retain_ratio=ratio) if method == "tfs" else method
    kw = dict(prune=prune, retain_ratio=None if method == "tfs" else ratio,
              key=jax.random.key(seed))
    kind = model.config.model_type
    if kind == "qwen2_5_vl":
        def run(x):
            return model.prune_videos(x, [shape["grid_thw"]], **kw)
    elif kind == "llava_onevision":
        def run(x):
            return model.prune_videos(x, **kw)
    else:
        def run(x):
            return model.prune_videos(x, (shape["frames"],), **kw)
    return warm(run, family_embeds(model, embeds, shape))


def build_prompt(model, ids, embeds, shape: dict, pruned, fps: float):
    """`Model.prompt` as `prepare` calls it, for the family of `model`."""
    kind = model.config.model_type
    embeds = family_embeds(model, embeds, shape)
    if kind == "qwen2_5_vl":
        seconds = [model.config.vision.temporal_patch_size / fps]
        return model.prompt(ids, video_embeds=embeds, video_grid_thw=[shape["grid_thw"]],
                            second_per_grid_ts=seconds, pruned=pruned)
    return model.prompt(ids, video_embeds=embeds, pruned=pruned)


def lm_jobs(model, prompt) -> dict[str, Job]:
    """The LM's prefill over one padded prompt, in two jobs:

    - "layer": one decoder layer (`decoder.run_layers` on a one-layer stack, as
      `Model.prefill` runs the whole stack: chunked attention, the family's RoPE, no
      invalid slots);
    - "rest": `Model.prefill(prompt, logits="last")` with zero layers: the embedding
      lookup, the visual rows, the final norm and the last row's LM head.
    """
    import jax
    import jax.numpy as jnp

    from tfs_jax.models import decoder

    config = model.config.text
    layers = model.params["layers"]
    n = prompt.ids.shape[0]
    x = jax.random.normal(jax.random.key(n), (n, config.hidden_size), jnp.float32)

    @jax.jit
    def layer(layers, x, positions, valid):
        return decoder.run_layers(layers, x, positions, valid, config=config,
                                  zero_invalid=False)[0]

    empty = type(model)(model.config, {**model.params,
                                       "layers": jax.tree.map(lambda a: a[:0], layers)})
    rest, _ = warm(lambda p: empty.prefill(p, logits="last")[0], prompt)
    return {"layer": Job(layer, (layers, x, prompt.positions.T, jnp.ones((n,), bool))),
            "rest": rest}


# ----------------------------------------------------------------------------------------
# The vision towers, part by part

VISION_PARTS = {
    "qwen2_5_vl": ("patch_embed", "window_block", "full_block", "merger"),
    "llava_onevision": ("patch_embed", "layer", "projector_pool"),
    "internvl": ("patch_embed", "block", "shuffle_projector"),
}


def vision_counts(full) -> dict[str, int]:
    """How many times the tower of the full config `full` runs each timed part."""
    v = full.vision
    if full.model_type == "qwen2_5_vl":
        fullatt = len(v.fullatt_block_indexes)
        return {"patch_embed": 1, "window_block": v.depth - fullatt, "full_block": fullatt,
                "merger": 1}
    if full.model_type == "llava_onevision":
        return {"patch_embed": 1, "layer": full.tower_depth, "projector_pool": 1}
    return {"patch_embed": 1, "block": full.feature_depth, "shuffle_projector": 1}


def vision_jobs(model, shape: dict, seed: int) -> tuple[dict[str, Job], dict[str, str]]:
    """The tower's parts for one prompt's frames, as the family's tower runs them (random
    inputs of the right shapes). Returns the jobs, and `{part: why}` for parts the package
    lacks."""
    import jax

    kind = model.config.model_type
    try:
        build = {"qwen2_5_vl": _qwen_vision, "llava_onevision": _llava_vision,
                 "internvl": _internvl_vision}[kind]
        return build(model, shape, jax.random.key(seed)), {}
    except (ImportError, AttributeError) as e:
        return {}, {p: f"not in tfs_jax.models: {e}" for p in VISION_PARTS[kind]}


def _jit(fn, **static):
    import functools

    import jax

    return jax.jit(functools.partial(fn, **static))


def _qwen_vision(model, shape, key) -> dict[str, Job]:
    """Qwen2.5-VL: the patch embedding (one matmul), one windowed block, one full-attention
    block (`vision_block` on `window_segments` and `frame_segments`, with the 2-D rotary)
    and the merger, over the video's `(t, h, w)` patch grid."""
    import jax
    import jax.numpy as jnp

    from tfs_jax.models.decoder import dense
    from tfs_jax.models.qwen2_5_vl import vision as qv

    config, p = model.config.vision, model.params["visual"]
    grids = (tuple(int(g) for g in shape["grid_thw"]),)
    n = int(np.prod(grids[0]))
    pixels = jax.random.normal(key, (n, config.patch_dim), jnp.float32)
    x = jax.random.normal(key, (n, config.hidden_size), jnp.float32)
    cos, sin = qv.rotary(grids, config)
    block = jax.tree.map(lambda a: a[0], p["blocks"])
    jobs = {"patch_embed": Job(jax.jit(dense), (p["patch_embed"], pixels)),
            "merger": Job(_jit(qv.patch_merger, config=config), (p["merger"], x))}
    for name, segments in (("window_block", qv.window_segments),
                           ("full_block", qv.frame_segments)):
        seg = segments(grids, config)
        args = (block, x, cos, sin, tuple(jnp.asarray(a) for a in (seg.index, seg.valid,
                                                                     seg.inverse)))
        jobs[name] = Job(_jit(qv.vision_block, config=config), args)
    return jobs


def _llava_vision(model, shape, key) -> dict[str, Job]:
    """LLaVA-OneVision: SigLIP's patch embedding (with its positions), one layer over every
    frame, and the projector with the 2x2 bilinear pooling."""
    import jax
    import jax.numpy as jnp

    from tfs_jax.models.llava_onevision import vision as lv

    c, p = model.config, model.params
    v, f = c.vision, shape["frames"]
    frames = jax.random.normal(key, (f, v.num_channels, v.image_size, v.image_size), jnp.float32)
    x = jax.random.normal(key, (f, v.grid ** 2, v.hidden_size), jnp.float32)
    feats = jax.random.normal(key, (f, v.grid ** 2, c.feature_width), jnp.float32)
    layer = jax.tree.map(lambda a: a[0], p["visual"]["layers"])

    def projector_pool(proj, feats):
        out = lv.project(proj, feats, act=c.projector_act)
        return lv.pool(out.reshape(f, v.grid, v.grid, -1))

    return {"patch_embed": Job(_jit(lv.patch_embed, config=v), (p["visual"], frames)),
            "layer": Job(_jit(lv.encoder_layer, config=v), (layer, x)),
            "projector_pool": Job(jax.jit(projector_pool), (p["projector"], feats))}


def _internvl_vision(model, shape, key) -> dict[str, Job]:
    """InternVL: InternViT's patch embedding (class token, positions), one block over every
    tile, and the pixel shuffle with the projector (the final norm first when the config
    has one)."""
    import jax
    import jax.numpy as jnp

    from tfs_jax.models.internvl import vision as iv

    c, p = model.config, model.params
    v, f, g = c.vision, shape["frames"], c.vision.grid
    pixels = jax.random.normal(key, (f, v.num_channels, v.image_size, v.image_size), jnp.float32)
    x = jax.random.normal(key, (f, 1 + g * g, v.hidden_size), jnp.float32)
    block = jax.tree.map(lambda a: a[0], p["visual"]["blocks"])

    def shuffle_projector(visual, proj, x):
        if c.vision_feature_layer == -1 and v.final_norm:
            x = iv.layer_norm(x, visual["final_norm"], eps=v.norm_eps)
        feats = iv.pixel_shuffle(x[:, 1:].reshape(f, g, g, -1))
        return iv.projector(proj, feats.reshape(f, (g // 2) ** 2, -1))

    return {"patch_embed": Job(_jit(iv.patch_embed, config=v), (p["visual"], pixels)),
            "block": Job(_jit(iv.vision_block, config=v), (block, x)),
            "shuffle_projector": Job(jax.jit(shuffle_projector), (p["visual"], p["projector"], x))}
