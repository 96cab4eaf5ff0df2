"""Pruning overhead on CPU: per-stage times of `tfs_prune` against one read of the video.

Command (from the repository root; writes results/bench_overhead.json and .png):

    python experiments/bench_overhead.py

`--quick` runs two toy sizes end to end (a smoke test of this script; nothing written);
`--plot-only` redraws the PNG from an existing JSON.

For every shape of SWEEP (N = T*H*W from 4k to 64k tokens, D in {384, 1536, 3584}) a random
float32 video goes through each stage of the pipeline as its own jitted function, fed the
previous stage's output, and through the whole `tfs_prune` (jitted, default config, `impl`
"auto", which is the jnp reference on CPU). The one-read bound is `jnp.sum(tokens)`: the
time to stream the array from memory once. All timings of a shape are interleaved round by
round in one run (the machine is shared and noisy); the JSON keeps medians and minima,
`ratio = total / read` uses medians. `compile_s` is the wall time of lowering and compiling
the whole `tfs_prune` for that shape (no persistent cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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

CONFIG = dict(repeats=3, seed=0, headline=(64, 16, 16, 1536))
# The sweep, as data: (T, H, W, D) on a 16x16 token grid; N = T*H*W = 4k, 16k, 64k.
SWEEP = [(t, 16, 16, d) for d in (384, 1536, 3584) for t in (16, 64, 256)]
QUICK = dict(CONFIG, repeats=2, headline=(8, 6, 7, 32))
QUICK_SWEEP = [(4, 6, 7, 32), (8, 6, 7, 32)]
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


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


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
        samples["read"].append(_timed(read, x))
        for name, fn, args, _ in stages:
            samples[name].append(_timed(fn, *[env[a] for a in args]))
        samples["total"].append(_timed(compiled, x, cfg))
    med = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    low = {k: 1e3 * min(v) for k, v in samples.items()}
    t, h, w, d = shape
    return dict(
        shape=list(shape), tokens=t * h * w, dim=d, gbytes=x.nbytes / 1e9,
        median_ms=med, min_ms=low, compile_s=compile_s,
        total_ms=med["total"], read_ms=med["read"], ratio=med["total"] / med["read"],
        neighbourhood_ms=sum(med[s] for s in NEIGHBOURHOOD),
    )


def machine_info() -> dict:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return dict(cpu=cpu, cores=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version(), jax=jax.__version__,
                backend=jax.default_backend(), commit=commit,
                load_average=os.getloadavg())


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, d in enumerate(sorted({r["dim"] for r in rows})):
        sel = sorted((r for r in rows if r["dim"] == d), key=lambda r: r["tokens"])
        n = np.array([r["tokens"] for r in sel], float)
        total = np.array([r["total_ms"] for r in sel])
        read = np.array([r["read_ms"] for r in sel])
        slope = np.polyfit(np.log(n), np.log(total), 1)[0] if len(n) > 1 else float("nan")
        color = f"C{i}"
        ax.loglog(n, total, "o-", color=color, label=f"tfs_prune, D={d} (slope {slope:.2f})")
        ax.loglog(n, read, "s--", color=color, alpha=0.6, label=f"one read, D={d}")
        ax.loglog(n, 20 * read, ":", color=color, alpha=0.4)
    ax.set_xlabel("tokens N = T*H*W")
    ax.set_ylabel("time (ms, median)")
    ax.set_title("CPU: whole pipeline vs one read (dotted: 20x read)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    sel = sorted((r for r in rows if r["dim"] == 1536), key=lambda r: r["tokens"]) or rows
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, nothing written")
    parser.add_argument("--out", default="results/bench_overhead")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    opts = parser.parse_args()
    if opts.plot_only:
        with open(opts.out + ".json") as f:
            plot(json.load(f)["rows"], opts.out + ".png")
        return
    config, sweep = (QUICK, QUICK_SWEEP) if opts.quick else (CONFIG, SWEEP)
    started = time.time()
    info = machine_info()
    rows = []
    for shape in sweep:
        row = measure(tuple(shape), config["repeats"], config["seed"])
        rows.append(row)
        stages = " ".join(f"{s}={row['median_ms'][s]:.1f}" for s in STAGES)
        print(f"{tuple(shape)}: total {row['total_ms']:.1f} ms, read {row['read_ms']:.2f} ms, "
              f"ratio {row['ratio']:.1f}, compile {row['compile_s']:.1f} s | {stages}", flush=True)
    info["load_average_end"] = os.getloadavg()
    result = dict(
        command=" ".join(["python"] + sys.argv),
        machine=info, config=config, sweep=[list(s) for s in sweep],
        wall_s=time.time() - started, rows=rows,
        note="CPU timings on a shared machine: medians of interleaved rounds; compare ratios "
             "within one run only.",
    )
    if opts.quick:
        return
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    plot(rows, opts.out + ".png")
    print(f"wrote {opts.out}.json and .png in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
