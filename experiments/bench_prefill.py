"""LM prefill time: all video tokens vs pruned by TFS and each baseline (paper Table 2 layout).

Command (from the repository root; writes results/bench_prefill.json and .png):

    python experiments/bench_prefill.py

`--quick` runs a toy size end to end (a smoke test of this script, results not written).

A synthetic 16-frame video of 16x16 tokens with D=1536 encoder features (a panning scene,
a moving object, a scene cut, noise) goes through each pruner and the Qwen2-0.5B-shaped LM
(`tfs_jax.vlm`; fewer layers than 24, see CONFIG) with a 16-token prefix and a 48-token
question after the video. Per row: `prune_s` (the pruner), `prefill_s` (the LM on the kept
slots), `e2e_s = prune_s + prefill_s` measured together, medians over `repeats`; compile
times are excluded and reported separately. `full_prefill_s` is the median of unpruned
prefills spread over the run (start, middle, end) so that load drift on the shared CPU
hits both sides; `speedup = full_prefill_s / e2e_s`.

The LM cost depends on the static slot count `K = static_budget(T*H*W, ratio)`, not on how
many slots are real (padding is masked, not removed), so all methods at one ratio run the
same LM program.
"""

from __future__ import annotations

import argparse
import functools
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
from tfs_jax import baselines
from tfs_jax import vlm

CONFIG = dict(
    frames=16, height=16, width=16, vision_dim=1536,  # 4,096 video tokens
    prefix_len=16, suffix_len=48,
    lm="qwen2_0_5b", num_layers=4,  # Qwen2-0.5B widths; 24 layers take minutes per prefill here
    repeats=3,
    fastv_layer=1,  # FastV prunes after this layer (the shallowest, in a 4-layer stand-in)
    seed=0,
)
QUICK = dict(CONFIG, frames=4, height=6, width=6, vision_dim=32, prefix_len=4, suffix_len=8,
             lm="tiny", num_layers=2, repeats=2)

# The sweep, as data: (method, retain_ratio). "fastv" prunes inside the LM only;
# "tfs+fastv" is the paper's Table 3 cascade: TFS at 50%, then FastV keeps half of that.
RATIOS = (0.5, 0.35, 0.25, 0.10)
METHODS = ("tfs", "uniform", "random", "evs", "divprune", "vidcom2")
SWEEP = [(m, r) for r in RATIOS for m in METHODS] + [("fastv", 0.5), ("fastv", 0.25), ("tfs+fastv", 0.25)]


def synthetic_video(cfg: dict) -> np.ndarray:
    """`(T, H, W, D)` float32 features: a pan over a wide scene, a 4x4 object moving
    diagonally, a cut to a new scene half-way, and a little noise."""
    rng = np.random.default_rng(cfg["seed"])
    t, h, w, d = cfg["frames"], cfg["height"], cfg["width"], cfg["vision_dim"]
    scenes = rng.standard_normal((2, h, w + t, d)).astype(np.float32)
    thing = rng.standard_normal((4, 4, d)).astype(np.float32) * 2
    video = np.empty((t, h, w, d), np.float32)
    for i in range(t):  # building test data, not traced code
        video[i] = scenes[int(i >= t // 2), :, i // 2: i // 2 + w]
        y, x = (i % max(h - 4, 1)), (2 * i) % max(w - 4, 1)
        video[i, y:y + 4, x:x + 4] = thing
    return video + 0.1 * rng.standard_normal(video.shape).astype(np.float32)


def _pruner(method: str, ratio: float):
    """A jitted `tokens -> Decision` (None for methods that prune inside the LM)."""
    if method == "fastv":
        return None
    if method in ("tfs", "tfs+fastv"):
        cfg = tfs_jax.TFSConfig(retain_ratio=0.5 if method == "tfs+fastv" else ratio)
        return jax.jit(lambda v: tfs_jax.tfs_prune(v, cfg))
    return jax.jit(functools.partial(getattr(baselines, method), retain_ratio=ratio))


def _fastv(method: str, ratio: float, cfg: dict):
    if method == "fastv":
        return vlm.FastVConfig(layer=cfg["fastv_layer"], retain_ratio=ratio)
    if method == "tfs+fastv":
        return vlm.FastVConfig(layer=cfg["fastv_layer"], retain_ratio=ratio / 0.5)
    return None


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def measure_row(method, ratio, tokens, prefill, cfg) -> dict:
    """Compile once, then `repeats` end-to-end runs (pruner, then LM) on the same video."""
    prune, fastv = _pruner(method, ratio), _fastv(method, ratio, cfg)
    run_lm = lambda result: prefill(tokens, result, fastv)
    result, prune_compile = _timed(prune, tokens) if prune else (None, 0.0)
    out, lm_compile = _timed(run_lm, result)
    prune_s, prefill_s = [], []
    for _ in range(cfg["repeats"]):
        result, p = _timed(prune, tokens) if prune else (None, 0.0)
        out, f = _timed(run_lm, result)
        prune_s.append(p)
        prefill_s.append(f)
    kept = int(np.sum(out.video_slot_valid)) if fastv else int(result.num_kept)
    slots = int(out.video_slots.shape[0])
    return dict(
        method=method, retain_ratio=ratio, tokens_kept=kept, slots=slots,
        prune_s=statistics.median(prune_s), prefill_s=statistics.median(prefill_s),
        e2e_s=statistics.median(p + f for p, f in zip(prune_s, prefill_s)),
        compile_s=prune_compile + lm_compile,
        runs=dict(prune_s=prune_s, prefill_s=prefill_s),
    )


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return dict(cpu=cpu, cores=os.cpu_count(), platform=platform.platform(), python=sys.version.split()[0],
                jax=jax.__version__, device=str(jax.devices()[0]), git_commit=commit)


def run(cfg: dict) -> dict:
    grid = (cfg["frames"], cfg["height"], cfg["width"])
    lm = getattr(vlm.VLMConfig, cfg["lm"])(num_layers=cfg["num_layers"], vision_dim=cfg["vision_dim"])
    params = vlm.init_params(lm, jax.random.key(cfg["seed"]))
    tokens = jnp.asarray(synthetic_video(cfg))
    prefix = jnp.arange(cfg["prefix_len"], dtype=jnp.int32) + 100
    suffix = jnp.arange(cfg["suffix_len"], dtype=jnp.int32) + 200

    def prefill(video, result, fastv):
        return vlm.prefill(params, video, prefix, suffix, config=lm, result=result, fastv=fastv, logits="last")

    _, full_compile = _timed(prefill, tokens, None, None)
    full = [_timed(prefill, tokens, None, None)[1]]
    rows, load = [], [os.getloadavg()[0]]
    for i, (method, ratio) in enumerate(SWEEP):
        if i == len(SWEEP) // 2:
            full.append(_timed(prefill, tokens, None, None)[1])
        rows.append(measure_row(method, ratio, tokens, prefill, cfg))
        print(f"{method:>10} {ratio:5.2f}  kept {rows[-1]['tokens_kept']:5d}  prune {rows[-1]['prune_s']:.3f}s"
              f"  prefill {rows[-1]['prefill_s']:.3f}s  e2e {rows[-1]['e2e_s']:.3f}s", flush=True)
    full.append(_timed(prefill, tokens, None, None)[1])
    load.append(os.getloadavg()[0])
    full_s = statistics.median(full)
    for row in rows:
        row.update(full_prefill_s=full_s, speedup=full_s / row["e2e_s"])
    return dict(
        command="python experiments/bench_prefill.py",
        machine=machine_info(), load_average_1min=dict(start=load[0], end=load[-1]),
        config=cfg, lm=dict(vars(lm)), video_tokens=int(np.prod(grid)),
        sequence_tokens_full=int(np.prod(grid)) + cfg["prefix_len"] + cfg["suffix_len"],
        full_prefill=dict(median_s=full_s, runs_s=full, compile_s=full_compile),
        rows=rows,
    )


def plot(report: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in dict.fromkeys(r["method"] for r in report["rows"]):
        rows = sorted((r for r in report["rows"] if r["method"] == method), key=lambda r: r["retain_ratio"])
        x = [100 * r["retain_ratio"] for r in rows]
        ax_t.plot(x, [r["e2e_s"] for r in rows], "o-", label=method)
        ax_s.plot(x, [r["speedup"] for r in rows], "o-", label=method)
    ax_t.axhline(report["full_prefill"]["median_s"], color="k", ls="--", label="all tokens")
    ax_t.set(xlabel="retained video tokens (%)", ylabel="prune + prefill (s, median)", yscale="log",
             title="End-to-end time")
    ax_s.axhline(1.0, color="k", ls="--")
    ax_s.axhline(3.0, color="gray", ls=":", label="3x target at 25%")
    ax_s.set(xlabel="retained video tokens (%)", ylabel="speed-up vs all tokens", title="End-to-end speed-up")
    ax_s.legend(fontsize=8)
    ax_t.legend(fontsize=8)
    lm = report["lm"]
    fig.suptitle(f"{report['video_tokens']} video tokens, LM hidden {lm['hidden_size']} x {lm['num_layers']} "
                 f"layers, {report['machine']['cores']} CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes; nothing written")
    parser.add_argument("--out", default="results/bench_prefill")
    args = parser.parse_args()
    report = run(QUICK if args.quick else CONFIG)
    if args.quick:
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    plot(report, args.out + ".png")
    print(f"wrote {args.out}.json and .png")


if __name__ == "__main__":
    main()
