"""Batched pruning: time per video of a vmapped batch against one video alone, on CPU.

Command (from the repository root; writes results/bench_batch.json and .png):

    python experiments/bench_batch.py

`--quick` runs a toy size end to end (a smoke test of this script, results not written).

`tfs_prune` and the focal op (`focal_reconstruction`, whose slow fallback must not run for
a batch that does not need it) are jitted alone and under `jax.vmap` over batches of B
random float32 videos of one shape. All timings of the run are interleaved round by round
(the machine is shared and noisy); the JSON keeps medians, and `per_video_ratio` =
(batch time / B) / (time of one video alone), 1.0 when a batch costs the sum of its videos.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import tfs_jax
from tfs_jax.kernels import focal_reconstruction

sys.path.insert(0, os.path.dirname(__file__))
from bench_overhead import machine_info  # noqa: E402

CONFIG = dict(shape=(64, 16, 16, 1536), batches=(2, 4), repeats=5, seed=0)
QUICK = dict(shape=(4, 6, 7, 16), batches=(2,), repeats=2, seed=0)


def functions():
    """`name -> function of one video`: the whole pruner and the focal op."""
    cfg = tfs_jax.TFSConfig()

    def prune(x):
        return tfs_jax.tfs_prune(x, cfg, key=jax.random.key(0)).keep_mask

    def focal(x):
        return focal_reconstruction(x, jnp.ones(x.shape[:3], bool), 1.0)[0]

    return {"tfs_prune": prune, "focal": focal}


def run(config: dict) -> dict:
    rng = np.random.default_rng(config["seed"])
    biggest = max(config["batches"])
    videos = jnp.asarray(rng.standard_normal((biggest,) + tuple(config["shape"]), np.float32))
    calls = {}  # (name, B) -> (jitted function, argument); B = 0 means one video alone
    for name, fn in functions().items():
        calls[name, 0] = jax.jit(fn), videos[0]
        for b in config["batches"]:
            calls[name, b] = jax.jit(jax.vmap(fn)), videos[:b]
    for (name, b), (fn, arg) in calls.items():
        jax.block_until_ready(fn(arg))  # compile
    for name in functions():
        for b in config["batches"]:  # each video of a batch gets what it gets alone
            batched = calls[name, b][0](videos[:b])
            assert all(bool(jnp.all(batched[i] == calls[name, 0][0](videos[i]))) for i in range(b))
    times = {k: [] for k in calls}
    for _ in range(config["repeats"]):
        for k, (fn, arg) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times[k].append(time.perf_counter() - start)
    rows = []
    for name in functions():
        alone = statistics.median(times[name, 0])
        for b in config["batches"]:
            batch = statistics.median(times[name, b])
            rows.append(dict(function=name, batch=b, alone_ms=1e3 * alone, batch_ms=1e3 * batch,
                             per_video_ratio=batch / b / alone))
    return dict(command=" ".join(["python"] + sys.argv), machine=machine_info(), config=config,
                rows=rows, note="CPU medians of interleaved rounds on a shared machine.")


def plot(report: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['function']}\nB={r['batch']}" for r in rows]
    ax.bar(range(len(rows)), [r["per_video_ratio"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="k", ls="--", label="batch costs the sum of its videos")
    ax.set_xticks(range(len(rows)), labels)
    ax.set(ylabel="time per video, batched / alone",
           title=f"vmapped batches of {'x'.join(map(str, report['config']['shape']))} videos")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes; nothing written")
    parser.add_argument("--out", default="results/bench_batch")
    args = parser.parse_args()
    report = run(QUICK if args.quick else CONFIG)
    for r in report["rows"]:
        print(f"{r['function']} B={r['batch']}: alone {r['alone_ms']:.1f} ms, batch "
              f"{r['batch_ms']:.1f} ms, per-video ratio {r['per_video_ratio']:.2f}")
    if args.quick:
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    plot(report, args.out + ".png")
    print(f"wrote {args.out}.json and .png")


if __name__ == "__main__":
    main()
