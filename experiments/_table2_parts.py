"""What `experiments/bench_table2.py` times: Qwen2.5-VL's components from `tfs_jax.models`
(the code a user runs) at a model's real widths, the pruners on video-like tokens, and the
timing loop (interleaved rounds).

Each timed piece is a `Job`: a jitted function and its arguments (parameters are arguments,
never closed over, so XLA does not fold gigabytes of constants into the program). A piece
the models package lacks is reported as missing, never replaced.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from typing import Callable

import numpy as np

from experiments.lib import common
from experiments.lib.common import timed


# Qwen2.5-VL-7B-Instruct's config.json (the fields `Qwen25VLConfig.from_dict` reads), and a
# toy of the same layout for the smoke run.
CONFIGS = {
    "qwen2.5-vl-7b": {
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
                          "out_hidden_size": 3584, "tokens_per_second": 2}},
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
}


def sizes(name: str) -> dict:
    """The widths and counts the benchmark needs, from `CONFIGS[name]` (no jax)."""
    c, v = CONFIGS[name], CONFIGS[name]["vision_config"]
    return {"vision": dict(hidden=v["hidden_size"], heads=v["num_heads"],
                           intermediate=v["intermediate_size"], depth=v["depth"],
                           fullatt=tuple(v["fullatt_block_indexes"]), window=v["window_size"],
                           patch=v["patch_size"], temporal_patch=v["temporal_patch_size"],
                           merge=v["spatial_merge_size"], out=v["out_hidden_size"]),
            "lm": dict(hidden=c["hidden_size"], heads=c["num_attention_heads"],
                       kv_heads=c["num_key_value_heads"], intermediate=c["intermediate_size"],
                       layers=c["num_hidden_layers"], vocab=c["vocab_size"])}


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
# Inputs


def video_tokens(clip: str, encoder: str, t: int, grid: int, dim: int, seed: int) -> np.ndarray:
    """`(t * grid * grid, dim)` float32 merged-token stand-ins, raster order: a bundled
    clip's `t` frames (one per temporal patch, uniformly sampled) through `encoder`
    (DINOv2-S/14 or pixel patches: a 16 x 16 grid at 224 px), projected to `dim` by a fixed
    random Gaussian matrix (scaled by `1/sqrt(D_in)`, which keeps cosine similarities about
    as they were: the pruners see the clip's structure at the LM's width)."""
    tokens = common.clip_data(clip, t, encoder, reference=False)["tokens"]
    if tokens.shape[1:3] != (grid, grid):
        raise ValueError(f"{encoder} gives a {tokens.shape[1:3]} grid, the prompt needs "
                         f"{grid} x {grid}: use 448 px frames")
    d_in = tokens.shape[-1]
    proj = np.random.default_rng(seed).standard_normal((d_in, dim)).astype(np.float32)
    return (tokens.reshape(-1, d_in) @ (proj / np.sqrt(d_in))).astype(np.float32)




def prompt_ids(prefix_len: int, video_tokens: int, suffix_len: int, video_token_id: int):
    """`(L,)` int32: text, the video's placeholders, text (the text ids are arbitrary
    non-placeholder ids: they change no time)."""
    text = lambda n, start: np.arange(start, start + n, dtype=np.int32)  # noqa: E731
    return np.concatenate([text(prefix_len, 1),
                           np.full(video_tokens, video_token_id, np.int32),
                           text(suffix_len, 1 + prefix_len)])


# ----------------------------------------------------------------------------------------
# The model under test (tfs_jax.models.qwen2_5_vl): one LM layer, one vision block


def bench_model(name: str, seed: int):
    """`(full config, Model)`: a `tfs_jax.models` Model of `CONFIGS[name]` cut to one LM
    layer and one vision block, random float32 parameters (N(0, 0.02^2), norms too), built
    through the package's own name map (`expected_tensors`, `tree_slot`, `convert`), so the
    pytree is the one `load` gives. Its LM head is tied to the embedding: the same
    `(V, d)` matmul as an untied head, and 2 GB less memory at 7B width."""
    import jax
    import jax.numpy as jnp

    from tfs_jax.models import qwen2_5_vl as qwen

    full = qwen.Qwen25VLConfig.from_dict(CONFIGS[name])
    small = dataclasses.replace(
        full, text=dataclasses.replace(full.text, num_layers=1), tie_word_embeddings=True,
        vision=dataclasses.replace(full.vision, depth=1, fullatt_block_indexes=()))
    leaves = {}
    for tensor, shape in qwen.expected_tensors(small).items():
        path, index, how = qwen.tree_slot(tensor)
        shape = qwen.convert(np.broadcast_to(np.float32(0), shape), how).shape
        leaves[path] = (1, *shape) if index is not None else shape
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    params = {}
    for key, (path, shape) in zip(keys, leaves.items()):
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = 0.02 * jax.random.normal(key, shape, jnp.float32)
    return full, qwen.Model(small, params)


def pruner_job(model, embeds, grid_thw, method: str, ratio: float, seed: int):
    """`Model.prune_videos`, as `forward` calls it (`serving.prune_video_embeds`: `tfs_prune`
    or `baselines.prune` on the merged grid and the gather of the kept embeddings; then
    `serving.compact`, the kept tokens into the smallest bucket of slots, which reads the
    kept count on the host). Returns the warmed job and its `PrunedVideos`."""
    import jax

    from tfs_jax import TFSConfig

    prune = TFSConfig(retain_ratio=ratio) if method == "tfs" else method
    ratio_arg = None if method == "tfs" else ratio
    key = jax.random.key(seed)

    def run(x):
        return model.prune_videos(x, grid_thw, prune=prune, retain_ratio=ratio_arg, key=key)

    return warm(run, embeds)


def lm_jobs(model, prompt) -> dict[str, Job]:
    """The LM's prefill over one padded prompt, in two jobs:

    - "layer": one decoder layer (`decoder.run_layers` on a one-layer stack, as
      `Model.prefill` runs the whole stack: chunked attention, M-RoPE, no invalid slots);
    - "rest": `Model.prefill(prompt, logits="last")` with zero layers: the embedding
      lookup, the visual rows, the final norm and the last row's LM head.
    """
    import jax
    import jax.numpy as jnp

    from tfs_jax.models import decoder
    from tfs_jax.models import qwen2_5_vl as qwen

    config = model.config.text
    layers = model.params["layers"]
    n = prompt.ids.shape[0]
    x = jax.random.normal(jax.random.key(n), (n, config.hidden_size), jnp.float32)

    @jax.jit
    def layer(layers, x, positions, valid):
        return decoder.run_layers(layers, x, positions, valid, config=config,
                                  zero_invalid=False)[0]

    empty = {**model.params, "layers": jax.tree.map(lambda a: a[:0], layers)}
    rest, _ = warm(lambda p: qwen.Model(model.config, empty).prefill(p, logits="last")[0],
                   prompt)
    return {"layer": Job(layer, (layers, x, prompt.positions.T, jnp.ones((n,), bool))),
            "rest": rest}


VISION_PARTS = ("patch_embed", "window_block", "full_block", "merger")


def vision_jobs(model, grid_thw, seed: int) -> tuple[dict[str, Job], dict[str, str]]:
    """The tower's parts for one video grid `(t, h, w)` (patches), as `vision_tower` runs
    them: the patch embedding (one matmul), one windowed block, one full-attention block
    (`vision_block` on `window_segments` and `frame_segments`, with the 2-D rotary) and
    the merger. Returns the jobs, and `{part: why}` for parts the package lacks."""
    import functools

    import jax
    import jax.numpy as jnp

    try:
        from tfs_jax.models.qwen2_5_vl import vision as qv
        from tfs_jax.models.decoder import dense
        parts = {"patch_embed": dense, "window_block": qv.vision_block,
                 "full_block": qv.vision_block, "merger": qv.patch_merger}
        segments = {"window_block": qv.window_segments, "full_block": qv.frame_segments}
    except (ImportError, AttributeError) as e:
        return {}, {p: f"not in tfs_jax.models: {e}" for p in VISION_PARTS}
    config, p = model.config.vision, model.params["visual"]
    grids = (tuple(int(g) for g in grid_thw),)
    n = int(np.prod(grids[0]))
    key = jax.random.key(seed)
    pixels = jax.random.normal(key, (n, config.patch_dim), jnp.float32)
    x = jax.random.normal(key, (n, config.hidden_size), jnp.float32)
    cos, sin = qv.rotary(grids, config)
    block = jax.tree.map(lambda a: a[0], p["blocks"])
    jobs = {"patch_embed": Job(jax.jit(parts["patch_embed"]), (p["patch_embed"], pixels)),
            "merger": Job(jax.jit(functools.partial(parts["merger"], config=config)),
                          (p["merger"], x))}
    for name in ("window_block", "full_block"):
        seg = segments[name](grids, config)
        args = (block, x, cos, sin, tuple(jnp.asarray(a) for a in (seg.index, seg.valid,
                                                                     seg.inverse)))
        jobs[name] = Job(jax.jit(functools.partial(parts[name], config=config)), args)
    return jobs, {}
