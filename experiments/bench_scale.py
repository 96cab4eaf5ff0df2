"""Long videos: time and peak memory of `tfs_prune` from T=32 to T=256 frames.

Command (writes results/bench_scale.json and results/bench_scale.png):

    python experiments/bench_scale.py            # full run, a few minutes on 2 cores
    python experiments/bench_scale.py --smoke    # tiny sizes, seconds (CI)

What it records, each point in a fresh subprocess so that peak memory is its own:
- time of the jitted default pipeline (median of `repeats` runs, compile excluded) and
  the fitted exponent of time against T (linear means 1.0; the target is <= 1.1);
- peak memory: the process's maximum resident set size, and XLA's own plan for the
  compiled program (arguments + outputs + temporaries);
- the big case (64, 24, 24, 3584) bfloat16, whose peak must stay within 8 GiB;
- compile time of the default config, and the number of XLA compilations in a 27-point
  sweep over traced fields (target: 1).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

CONFIG = {
    "frames": [32, 64, 128, 256],
    "grid": (16, 16),
    "dim": 1536,
    "big": {"shape": (64, 24, 24, 3584), "dtype": "bfloat16", "limit_gib": 8.0},
    "repeats": 5,
}
SMOKE = {
    "frames": [4, 8],
    "grid": (4, 4),
    "dim": 16,
    "big": {"shape": (8, 6, 6, 32), "dtype": "bfloat16", "limit_gib": 8.0},
    "repeats": 2,
}
RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results"


def measure_point(shape, dtype, repeats) -> dict:
    """Time and memory of one shape, measured in this process (run it in a fresh one)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tfs_jax

    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.standard_normal(shape, np.float32), getattr(jnp, dtype))
    prune = jax.jit(tfs_jax.tfs_prune)
    start = time.perf_counter()
    compiled = prune.lower(tokens, tfs_jax.TFSConfig()).compile()
    compile_s = time.perf_counter() - start
    mem = compiled.memory_analysis()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(tokens, tfs_jax.TFSConfig()))
        times.append(time.perf_counter() - start)
    xla_bytes = None
    if mem is not None:
        xla_bytes = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                     + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
    return {
        "shape": list(shape),
        "dtype": dtype,
        "tokens": int(np.prod(shape[:3])),
        "median_s": float(np.median(times)),
        "compile_s": compile_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "xla_planned_gib": None if xla_bytes is None else xla_bytes / 2**30,
    }


def count_sweep_compiles(shape) -> dict:
    """Compile time of the default config and XLA compilations over a 27-point sweep of
    traced fields (3 factor weights x 3 abs thresholds x 3 relative quantiles)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import tfs_jax

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, secs, **_: compiles.append(secs) if name == "/jax/core/compile/backend_compile_duration" else None
    )
    tokens = jnp.asarray(np.random.default_rng(0).standard_normal(shape, np.float32))
    prune = jax.jit(tfs_jax.tfs_prune)
    cfg = tfs_jax.TFSConfig()
    points = [cfg.replace(factor_weights=w, abs_threshold=thr, rel_quantile=q)
              for w in [(1, 1, 1), (1, 0, 0), (0, 1, 2)] for thr in (0.3, 0.6, 0.9) for q in (0.5, 0.9, 1.0)]
    start = time.perf_counter()
    jax.block_until_ready(prune(tokens, points[0]))
    first_call_s = time.perf_counter() - start
    after_first = len(compiles)
    for point in points[1:]:
        jax.block_until_ready(prune(tokens, point))
    return {
        "default_first_call_s": first_call_s,
        "default_backend_compile_s": sum(compiles[:after_first]),
        "sweep_points": len(points),
        # Compiled programs of the jitted pipeline after all 27 points (target: 1), and
        # XLA compilations of any kind after the first point (0: nothing recompiled).
        "sweep_compilations": prune._cache_size(),
        "backend_compiles_after_first_point": len(compiles) - after_first,
    }


def _in_subprocess(kind: str, payload: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, json.dumps(payload)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fitted_exponent(xs, ys) -> float:
    """Slope of log(time) against log(T): 1.0 is linear."""
    import numpy as np

    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def plot(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [p["shape"][0] for p in points]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.loglog(frames, [p["median_s"] for p in points], "o-", label="tfs_prune")
    a.loglog(frames, [points[0]["median_s"] * f / frames[0] for f in frames], "k--", lw=0.8, label="linear")
    a.set_xlabel("frames T")
    a.set_ylabel("seconds (median)")
    a.legend()
    b.plot(frames, [p["peak_rss_gib"] for p in points], "o-", label="peak RSS")
    b.plot(frames, [p["xla_planned_gib"] or 0 for p in points], "s--", label="XLA plan")
    b.set_xlabel("frames T")
    b.set_ylabel("GiB")
    b.legend()
    fig.suptitle(f"tfs_prune on (T, {points[0]['shape'][1]}, {points[0]['shape'][2]}, {points[0]['shape'][3]}) float32")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for CI")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, payload = args.worker[0], json.loads(args.worker[1])
        result = measure_point(**payload) if kind == "point" else count_sweep_compiles(**payload)
        print(json.dumps(result))
        return
    cfg = SMOKE if args.smoke else CONFIG
    h, w = cfg["grid"]
    points = []
    for t in cfg["frames"]:
        points.append(_in_subprocess("point", {"shape": (t, h, w, cfg["dim"]), "dtype": "float32",
                                               "repeats": cfg["repeats"]}))
        print(f"T={t}: {points[-1]['median_s'] * 1e3:.1f} ms, peak {points[-1]['peak_rss_gib']:.2f} GiB", flush=True)
    big = _in_subprocess("point", {"shape": cfg["big"]["shape"], "dtype": cfg["big"]["dtype"], "repeats": 2})
    sweep = _in_subprocess("sweep", {"shape": (cfg["frames"][0], h, w, cfg["dim"])})
    exponent = fitted_exponent([p["shape"][0] for p in points], [p["median_s"] for p in points])
    report = {
        "command": "python experiments/bench_scale.py" + (" --smoke" if args.smoke else ""),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "config": cfg,
        "points": points,
        "time_exponent": exponent,
        "big": {**big, "limit_gib": cfg["big"]["limit_gib"], "within_limit": big["peak_rss_gib"] <= cfg["big"]["limit_gib"]},
        "compilation": sweep,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "bench_scale_smoke" if args.smoke else "bench_scale"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(points, args.out / f"{name}.png")
    print(json.dumps({"time_exponent": exponent, "big_peak_gib": big["peak_rss_gib"],
                      "sweep_compilations": sweep["sweep_compilations"]}, indent=2))


if __name__ == "__main__":
    main()
