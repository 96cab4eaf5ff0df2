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

# Qwen2.5-VL-7B-Instruct's config.json (vision_config and the text model), and a toy of the
# same shape for the smoke run. `window` and `patch` are pixels.
SIZES = {
    "qwen2.5-vl-7b": {
        "vision": dict(hidden=1280, heads=16, intermediate=3420, depth=32,
                       fullatt=(7, 15, 23, 31), window=112, patch=14, temporal_patch=2,
                       merge=2, out=3584),
        "lm": dict(hidden=3584, heads=28, kv_heads=4, intermediate=18944, layers=28,
                   vocab=152064, mrope_section=(16, 24, 24)),
    },
    "tiny": {
        "vision": dict(hidden=32, heads=2, intermediate=48, depth=4, fullatt=(1, 3),
                       window=112, patch=14, temporal_patch=2, merge=2, out=64),
        "lm": dict(hidden=64, heads=4, kv_heads=2, intermediate=128, layers=3, vocab=512,
                   mrope_section=(2, 3, 3)),
    },
}


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
    out, seconds = _timed(fn, *args)
    return Job(fn, args, compile_s=seconds), out


def _timed(fn, *args) -> tuple[object, float]:
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def compile_jobs(jobs: dict[str, Job]) -> None:
    """Compile every jitted job ahead of time (`lower(...).compile()`: no run)."""
    for name, job in jobs.items():
        if job.compile_s is None:
            start = time.perf_counter()
            job.fn = job.fn.lower(*job.args).compile()
            job.compile_s = time.perf_counter() - start
            print(f"compiled {name} ({job.compile_s:.1f} s)", file=sys.stderr, flush=True)


def time_jobs(jobs: dict[str, Job], rounds: int, seed: int, *, cheap_s: float = 1.0,
              cheap_rounds: int = 0) -> None:
    """`rounds` rounds, each running every job once in a fresh random order, so that load
    drift on a shared machine spreads over all of them; then rounds up to `cheap_rounds`
    of the jobs whose first run took under `cheap_s` (the pruners: more runs cost little).
    Fills `runs_s` in place; compiles first."""
    compile_jobs(jobs)
    order = np.random.default_rng(seed)
    names = list(jobs)
    for i in range(max(rounds, cheap_rounds)):
        start = time.perf_counter()
        for j in order.permutation(len(names)):
            job = jobs[names[j]]
            if i < rounds or job.runs_s[0] < cheap_s:
                job.runs_s.append(_timed(job.fn, *job.args)[1])
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
    from experiments import _common

    tokens = _common.clip_data(clip, t, encoder, reference=False)["tokens"]
    if tokens.shape[1:3] != (grid, grid):
        raise ValueError(f"{encoder} gives a {tokens.shape[1:3]} grid, the prompt needs "
                         f"{grid} x {grid}: use 448 px frames")
    d_in = tokens.shape[-1]
    proj = np.random.default_rng(seed).standard_normal((d_in, dim)).astype(np.float32)
    return (tokens.reshape(-1, d_in) @ (proj / np.sqrt(d_in))).astype(np.float32)


def random_params(shapes, seed: int, scale: float = 0.02):
    """A pytree of `shapes` (`ShapeDtypeStruct` leaves) filled with `N(0, scale^2)` (norm
    scales too: values do not change the time), from one PRNG draw per leaf."""
    import jax

    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(treedef, [
        scale * jax.random.normal(k, s.shape, s.dtype) for k, s in zip(keys, leaves)])


# ----------------------------------------------------------------------------------------
# The pruners


def pruner_job(embeds, grid_thw, method: str, ratio: float, seed: int) -> tuple[Job, object]:
    """What `Model.forward` runs to prune one video prompt: `serving.prune_video_embeds`
    (`tfs_prune` or `baselines.prune` on the merged grid, then the gather of the kept
    embeddings) and `serving.compact` (the kept tokens into the smallest bucket of slots,
    which reads the kept count on the host). Returns the warmed job and its result (its
    `num_kept`, and its slots: the LM's video length)."""
    import jax

    from tfs_jax import TFSConfig
    from tfs_jax import serving

    config, key = TFSConfig(retain_ratio=ratio), jax.random.key(seed)

    def prune(x):
        return serving.compact(serving.prune_video_embeds(x, grid_thw, config, method=method,
                                                          key=key))

    return warm(prune, embeds)


# ----------------------------------------------------------------------------------------
# The LM (tfs_jax.models.decoder)


def decoder_config(lm: dict):
    from tfs_jax.models.decoder import DecoderConfig

    return DecoderConfig(vocab_size=lm["vocab"], hidden_size=lm["hidden"], num_layers=1,
                         num_heads=lm["heads"], num_kv_heads=lm["kv_heads"],
                         intermediate_size=lm["intermediate"],
                         mrope_section=lm["mrope_section"])


def lm_layer_jobs(lm: dict, lengths, seed: int) -> dict[int, Job]:
    """One decoder layer (a one-layer stack through `run_layers`, the code the model's
    prefill scans, chunked attention included) over each sequence length."""
    import jax
    import jax.numpy as jnp

    from tfs_jax.models import decoder

    config = decoder_config(lm)
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct((1, *s.shape), s.dtype),
                          decoder.layer_shapes(config))
    params = random_params(shapes, seed)

    @jax.jit
    def layer(params, x, positions, valid):
        return decoder.run_layers(params, x, positions, valid, config=config)[0]

    jobs = {}
    for n in lengths:
        x = jax.random.normal(jax.random.key(n), (n, lm["hidden"]), jnp.float32)
        positions = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, 3))
        jobs[n] = Job(layer, (params, x, positions, jnp.ones((n,), bool)))
    return jobs


def lm_head_job(lm: dict, seed: int) -> tuple[Job | None, str | None]:
    """The final RMSNorm and the `lm_head` of the last row (`logits="last"`): what the
    prefill runs once after its layers, whatever the length."""
    import jax
    import jax.numpy as jnp

    from tfs_jax.models import decoder

    config = decoder_config(lm)
    shapes = {"scale": jax.ShapeDtypeStruct((lm["hidden"],), jnp.float32),
              "lm_head": jax.ShapeDtypeStruct((lm["hidden"], lm["vocab"]), jnp.float32)}
    params = random_params(shapes, seed + 1)

    @jax.jit
    def head(params, x):
        last = decoder.rms_norm(x[-1:], params["scale"], eps=config.rms_eps)
        return last @ params["lm_head"]

    x = jax.random.normal(jax.random.key(seed), (8, lm["hidden"]), jnp.float32)
    return Job(head, (params, x)), None


# ----------------------------------------------------------------------------------------
# The vision tower (tfs_jax.models.qwen2_5_vl)

VISION_PARTS = ("patch_embed", "window_block", "full_block", "merger")


def vision_jobs(vision: dict, grid_thw, seed: int) -> tuple[dict[str, Job], dict[str, str]]:
    """The tower's parts for one video grid `(t, h, w)` (patches): the patch embedding,
    one windowed block, one full-attention block and the merger. Returns the jobs and
    `{part: why}` for parts the models package does not provide (reported as missing)."""
    try:
        from tfs_jax.models import qwen2_5_vl  # noqa: F401
    except ImportError as e:
        return {}, {p: f"tfs_jax.models.qwen2_5_vl not importable: {e}" for p in VISION_PARTS}
    return {}, {p: "not wired yet" for p in VISION_PARTS}
