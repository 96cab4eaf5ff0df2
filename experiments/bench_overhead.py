"""Pruning overhead: per-stage times of `tfs_prune` against one read of the video.

    python -m experiments.bench_overhead          # results/bench_overhead.{json,png}
    python -m experiments.bench_overhead --smoke  # two toy sizes (CI)

For every shape of `Config.sweep` (N = T*H*W from 4k to 64k tokens, D in {384, 1536, 3584})
a random float32 video goes through each stage of the pipeline as its own jitted function,
fed the previous stage's output, and through the whole `tfs_prune` (jitted, default config,
`impl` "auto", which is the jnp reference on CPU). The one-read bound is `jnp.sum(tokens)`:
the time to stream the array from memory once. All timings of a shape are interleaved
round by round (the machine is shared and noisy); the JSON keeps medians, minima and maxima,
and `ratio = total / read` uses medians. `compile_s` is the wall time of lowering and
compiling the whole `tfs_prune` for that shape (the persistent cache is off for this
benchmark). `slope_by_dim`: the log-log slope of the median time against N for each D.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import tfs_jax
from tfs_jax import TFSConfig
from tfs_jax.clustering import clustering_features
from tfs_jax.clustering import segmented_kmeans
from tfs_jax.kernels import focal_reconstruction
from tfs_jax.kernels import motion_match
from tfs_jax.kernels import window_contrast
from tfs_jax.selection import select_tokens
from tfs_jax.tokens import valid_and_scale
from tfs_jax.saliency import confidence_blend
from tfs_jax.saliency import dynamic_saliency
from tfs_jax.segments import segment_frames

from experiments import harness
from experiments.lib import render as md
from experiments.lib import metrics
from experiments.lib.common import timed

COMPILE_CACHE = False  # compile_s is the compile itself, not a read of the cache


@dataclasses.dataclass(frozen=True)
class Config:
    # The sweep, as data: (T, H, W, D) on a 16x16 token grid; N = T*H*W = 4k, 16k, 64k.
    sweep: tuple = tuple((t, 16, 16, d) for d in (384, 1536, 3584) for t in (16, 64, 256))
    repeats: int = 3
    seed: int = 0


SMOKE = Config(sweep=((4, 6, 7, 32),), repeats=2)
STAGES = ("prepare", "motion", "dynamic", "regional", "focal", "blend", "segments",
          "features", "kmeans", "select")
NEIGHBOURHOOD = ("motion", "regional", "focal")


def stage_functions(cfg: TFSConfig):
    """Each stage as `(name, jitted function, argument names, output names)`, chained."""
    return [
        ("prepare", lambda x: valid_and_scale(x), ("x",), ("valid", "scale")),
        ("motion", lambda x, valid, scale: motion_match(
            x, valid, cfg.stay_bias, radius=cfg.motion_radius, scale=scale),
         ("x", "valid", "scale"), ("motion", "has")),
        ("dynamic", lambda motion, valid: dynamic_saliency(motion, valid),
         ("motion", "valid"), ("s_m",)),
        ("regional", lambda x, valid, scale: window_contrast(x, valid, scale=scale),
         ("x", "valid", "scale"), ("raw_r", "count_r")),
        ("focal", lambda x, valid, scale: focal_reconstruction(
            x, valid, cfg.focal_temperature, scale=scale),
         ("x", "valid", "scale"), ("raw_f", "count_f")),
        ("blend", lambda raw_r, count_r, raw_f, count_f, valid: (
            confidence_blend(raw_r, count_r, valid), confidence_blend(raw_f, count_f, valid)),
         ("raw_r", "count_r", "raw_f", "count_f", "valid"), ("s_r", "s_f")),
        ("segments", lambda s_m, valid: segment_frames(s_m, valid), ("s_m", "valid"), ("segment",)),
        ("features", lambda s_m, s_r, s_f, segment, valid: (
            jnp.stack([s_m, s_r, s_f], -1),
            clustering_features(jnp.stack([s_m, s_r, s_f], -1), segment, valid)),
         ("s_m", "s_r", "s_f", "segment", "valid"), ("saliency", "feats")),
        ("kmeans", lambda feats, segment, valid, key: segmented_kmeans(
            feats, segment, valid, key, num_clusters=cfg.num_clusters, iters=cfg.kmeans_iters),
         ("feats", "segment", "valid", "key"), ("cluster",)),
        ("select", lambda saliency, feats, segment, cluster, valid, motion, has: select_tokens(
            saliency, feats, segment, cluster, valid, motion, has, retain_ratio=cfg.retain_ratio,
            num_clusters=cfg.num_clusters, coalesce=cfg.coalesce, refill=cfg.refill),
         ("saliency", "feats", "segment", "cluster", "valid", "motion", "has"), ("keep",)),
    ]


def measure(shape, repeats: int, seed: int) -> dict:
    """Medians and minima (ms) of every stage, the whole pipeline and one read."""
    cfg = TFSConfig()
    x = jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    env = {"x": x, "key": jax.random.key(seed)}
    stages = [(name, jax.jit(fn), args, outs) for name, fn, args, outs in stage_functions(cfg)]
    for name, fn, args, outs in stages:  # compile and chain the outputs
        result = fn(*[env[a] for a in args])
        result = result if isinstance(result, tuple) else (result,)
        env.update(zip(outs, jax.block_until_ready(result)))
    prune = jax.jit(tfs_jax.tfs_prune)
    start = time.perf_counter()
    compiled = prune.lower(x, cfg).compile()
    compile_s = time.perf_counter() - start
    read = jax.jit(jnp.sum)
    jax.block_until_ready((compiled(x, cfg), read(x)))
    samples = {name: [] for name in STAGES + ("total", "read")}
    for _ in range(repeats):
        samples["read"].append(timed(read, x)[1])
        for name, fn, args, _ in stages:
            samples[name].append(timed(fn, *[env[a] for a in args])[1])
        samples["total"].append(timed(compiled, x, cfg)[1])
    med = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    low = {k: 1e3 * min(v) for k, v in samples.items()}
    high = {k: 1e3 * max(v) for k, v in samples.items()}
    t, h, w, d = shape
    return dict(
        shape=list(shape), tokens=t * h * w, dim=d, gbytes=x.nbytes / 1e9,
        median_ms=med, min_ms=low, max_ms=high, compile_s=compile_s,
        total_ms=med["total"], read_ms=med["read"], ratio=med["total"] / med["read"],
        neighbourhood_ms=sum(med[s] for s in NEIGHBOURHOOD),
    )


def slopes(rows: list[dict]) -> dict:
    """`{D: log-log slope of the median total time against N}` (1.0 is linear)."""
    out = {}
    for d in sorted({r["dim"] for r in rows}):
        sel = [r for r in rows if r["dim"] == d]
        if len(sel) > 1:
            out[str(d)] = metrics.loglog_slope([r["tokens"] for r in sel],
                                               [r["total_ms"] for r in sel])
    return out


def run(cfg: Config) -> dict:
    rows = []
    for shape in cfg.sweep:
        row = measure(tuple(shape), cfg.repeats, cfg.seed)
        rows.append(row)
        stages = " ".join(f"{s}={row['median_ms'][s]:.1f}" for s in STAGES)
        print(f"{tuple(shape)}: total {row['total_ms']:.1f} ms, read {row['read_ms']:.2f} ms, "
              f"ratio {row['ratio']:.1f}, compile {row['compile_s']:.1f} s | {stages}",
              file=sys.stderr, flush=True)
    return {"stages": list(STAGES), "rows": rows, "slope_by_dim": slopes(rows),
            "note": "medians of interleaved rounds on a shared machine; compare ratios within "
                    "one run only"}


def plot(record: dict):
    from matplotlib.figure import Figure

    rows = record["rows"]
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax, bars = fig.subplots(1, 2)
    for i, d in enumerate(sorted({r["dim"] for r in rows})):
        sel = sorted((r for r in rows if r["dim"] == d), key=lambda r: r["tokens"])
        n = np.array([r["tokens"] for r in sel], float)
        total = np.array([r["total_ms"] for r in sel])
        read = np.array([r["read_ms"] for r in sel])
        slope = record["slope_by_dim"].get(str(d), float("nan"))
        color = f"C{i}"
        ax.loglog(n, total, "o-", color=color, label=f"tfs_prune, D={d} (slope {slope:.2f})")
        ax.loglog(n, read, "s--", color=color, alpha=0.6, label=f"one read, D={d}")
        ax.loglog(n, 20 * read, ":", color=color, alpha=0.4)
    ax.set_xlabel("tokens N = T*H*W")
    ax.set_ylabel("time (ms, median)")
    ax.set_title(f"{record['machine']['backend']}: whole pipeline vs one read (dotted: 20x read)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    sel = sorted((r for r in rows if r["dim"] == 1536), key=lambda r: r["tokens"]) or rows
    sel = [r for r in sel if r["dim"] == sel[0]["dim"]]
    bottom = np.zeros(len(sel))
    labels = [f"N={r['tokens']}" for r in sel]
    for j, stage in enumerate(STAGES):
        vals = np.array([r["median_ms"][stage] for r in sel])
        bars.bar(labels, vals, bottom=bottom, label=stage, color=f"C{j}")
        bottom += vals
    bars.plot(labels, [20 * r["read_ms"] for r in sel], "k_", markersize=40, label="20x one read")
    bars.set_ylabel("time (ms, median), stacked")
    bars.set_title(f"stages, D={sel[0]['dim']}")
    bars.legend(fontsize=7, ncol=2)
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('overhead',)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    def stage(r, s, digits):
        return md.spread({k: r[f"{k}_ms"][s] for k in ("median", "min", "max")}, digits)

    rows = [(f"{r['shape'][0]}x{r['shape'][1]}x{r['shape'][2]}x{r['shape'][3]}", r["tokens"],
             stage(r, "total", 1), f"{r['read_ms']:.2f}", f"{r['ratio']:.0f}x",
             f"{r['compile_s']:.1f}")
            for r in record["rows"]]
    table = md.table(["T x H x W x D", "tokens", "tfs_prune ms (min-max)", "one read ms",
                      "ratio", "compile s"], rows)
    ratios = [r["ratio"] for r in record["rows"]]
    met = sum(x <= 20 for x in ratios)
    goal = ("met on every shape" if met == len(ratios) else "not met on any shape"
            if met == 0 else f"met on {met} of {len(ratios)} shapes")
    slopes = ", ".join(f"{s:.2f} at D={d}" for d, s in record["slope_by_dim"].items())
    text = (f"{md.provenance(record)}\n\n{table}\n\nThe whole pipeline costs "
            f"{min(ratios):.0f}-{max(ratios):.0f} reads of its input: the goal of 20 reads is "
            f"**{goal}**." + (f" Time against N (log-log slope): {slopes}." if slopes else ""))
    stages = record["stages"] + ["total", "read"]
    full = [text, "Per stage, median ms (min-max):", md.table(
        ["shape"] + stages,
        [["x".join(map(str, r["shape"]))] + [stage(r, s, 2) for s in stages]
         for r in record["rows"]])]
    return {"overhead": text}, "\n\n".join(full)



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
