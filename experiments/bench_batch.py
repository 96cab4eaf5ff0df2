"""Batched pruning: time per video of a vmapped batch against one video alone.

    python -m experiments.bench_batch          # results/bench_batch.{json,png}
    python -m experiments.bench_batch --smoke  # a toy size (CI)

`tfs_prune` and the focal op (`focal_reconstruction`, whose slow fallback must not run for
a batch that does not need it) are jitted alone and under `jax.vmap` over batches of B
random float32 videos of one shape; each video of a batch must get what it gets alone. All
timings of the run are interleaved round by round (the machine is shared and noisy); the
JSON keeps medians, minima and maxima, and `per_video_ratio` = (median batch time / B) /
(median time of one video alone), 1.0 when a batch costs the sum of its videos.
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
from tfs_jax.kernels import focal_reconstruction

from experiments import harness
from experiments.lib import render as md


@dataclasses.dataclass(frozen=True)
class Config:
    shape: tuple = (64, 16, 16, 1536)
    batches: tuple = (2, 4)
    repeats: int = 5
    seed: int = 0


SMOKE = Config(shape=(4, 6, 7, 16), batches=(2,), repeats=2)


def functions():
    """`name -> function of one video`: the whole pruner and the focal op."""
    cfg = tfs_jax.TFSConfig()

    def prune(x):
        return tfs_jax.tfs_prune(x, cfg, key=jax.random.key(0)).keep_mask

    def focal(x):
        return focal_reconstruction(x, jnp.ones(x.shape[:3], bool), 1.0)[0]

    return {"tfs_prune": prune, "focal": focal}


def run(config: Config) -> dict:
    rng = np.random.default_rng(config.seed)
    biggest = max(config.batches)
    videos = jnp.asarray(rng.standard_normal((biggest,) + tuple(config.shape), np.float32))
    calls = {}  # (name, B) -> (jitted function, argument); B = 0 means one video alone
    for name, fn in functions().items():
        calls[name, 0] = jax.jit(fn), videos[0]
        for b in config.batches:
            calls[name, b] = jax.jit(jax.vmap(fn)), videos[:b]
    for (name, b), (fn, arg) in calls.items():
        jax.block_until_ready(fn(arg))  # compile
    for name in functions():
        for b in config.batches:  # each video of a batch gets what it gets alone
            batched = calls[name, b][0](videos[:b])
            assert all(bool(jnp.all(batched[i] == calls[name, 0][0](videos[i]))) for i in range(b))
    times = {k: [] for k in calls}
    for _ in range(config.repeats):
        for k, (fn, arg) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times[k].append(time.perf_counter() - start)
    rows = []
    for name in functions():
        alone = statistics.median(times[name, 0])
        for b in config.batches:
            batch = times[name, b]
            rows.append(dict(function=name, batch=b, alone_ms=1e3 * alone,
                             alone_range_ms=[1e3 * min(times[name, 0]), 1e3 * max(times[name, 0])],
                             batch_ms=1e3 * statistics.median(batch),
                             batch_range_ms=[1e3 * min(batch), 1e3 * max(batch)],
                             per_video_ratio=statistics.median(batch) / b / alone))
            print(f"{name} B={b}: per-video ratio {rows[-1]['per_video_ratio']:.2f}",
                  file=sys.stderr)
    return dict(rows=rows, note="medians of interleaved rounds on a shared machine")


def plot(record: dict):
    from matplotlib.figure import Figure

    rows = record["rows"]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    labels = [f"{r['function']}\nB={r['batch']}" for r in rows]
    ax.bar(range(len(rows)), [r["per_video_ratio"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="k", ls="--", label="batch costs the sum of its videos")
    ax.set_xticks(range(len(rows)), labels)
    ax.set(ylabel="time per video, batched / alone",
           title=f"vmapped batches of {'x'.join(map(str, record['config']['shape']))} videos "
                 f"({record['machine']['backend']})")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('batch',)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    rows = [r for r in record["rows"] if r["function"] == "tfs_prune"]
    cheap = [f"B={r['batch']}" for r in rows if r["per_video_ratio"] <= 1]
    dear = [f"B={r['batch']}" for r in rows if r["per_video_ratio"] > 1]
    verdict = ("no more than its videos one by one" if not dear else
               "more than its videos one by one" if not cheap else
               f"no more than its videos one by one at {md.listing(cheap)} and more at "
               f"{md.listing(dear)}")
    shape = "x".join(map(str, record["config"]["shape"]))
    m = record["machine"]
    at = md.listing(f"{r['per_video_ratio']:.2f} at B={r['batch']}" for r in rows)
    text = (f"A vmapped batch of `tfs_prune` costs {verdict} (`{record['command']}`, {shape} on "
            f"{m['cpu_count']} x {m['cpu']}: {at} of the single-video time per video).")
    full = md.table(["function", "B", "alone ms (min-max)", "batch ms (min-max)",
                     "per video / alone"],
                    [(r["function"], r["batch"],
                      md.spread(dict(zip(("median", "min", "max"),
                                         [r["alone_ms"], *r["alone_range_ms"]])), 1),
                      md.spread(dict(zip(("median", "min", "max"),
                                         [r["batch_ms"], *r["batch_range_ms"]])), 1),
                      f"{r['per_video_ratio']:.2f}") for r in record["rows"]])
    return {"batch": text}, f"{md.provenance(record)}\n\n{full}"



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
