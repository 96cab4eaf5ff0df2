"""Long videos: time and peak memory of `tfs_prune` from T=32 to T=256 frames.

    python -m experiments.bench_scale          # results/bench_scale.{json,png}
    python -m experiments.bench_scale --smoke  # tiny sizes (CI)

What it records, each point in a fresh Python process so that peak memory is its own:
- time of the jitted default pipeline (median, minimum and maximum of `repeats` runs,
  compile excluded) and the fitted exponent of time against T (linear means 1.0; the
  target is <= 1.1);
- peak memory: the process's maximum resident set size, and XLA's own plan for the
  compiled program (arguments + outputs + temporaries);
- the big case (64, 24, 24, 3584) bfloat16, whose peak must stay within 8 GiB;
- compile time of the default config, and the number of XLA compilations in a 27-point
  sweep over traced fields (target: 1).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import time

from experiments import harness
from experiments.lib import render as md

COMPILE_CACHE = False  # the workers compile from scratch: compile times are real


@dataclasses.dataclass(frozen=True)
class Config:
    frames: tuple = (32, 64, 128, 256)
    grid: tuple = (16, 16)
    dim: int = 1536
    big_shape: tuple = (64, 24, 24, 3584)
    big_dtype: str = "bfloat16"
    limit_gib: float = 8.0
    repeats: int = 5
    # Hand this process's persistent compilation cache, if it has one, to the workers: only
    # for smoke runs, since it turns compile_s into the time to read a cached program. The
    # harness sets none for this module (COMPILE_CACHE = False), so the only cache that
    # reaches the workers is the test suite's (tests/conftest.py); a smoke run from the
    # command line has none.
    worker_cache: bool = False


SMOKE = Config(frames=(4, 8), grid=(4, 4), dim=16, big_shape=(8, 6, 6, 32), repeats=2,
               worker_cache=True)


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
        "min_s": float(np.min(times)),
        "max_s": float(np.max(times)),
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


def worker(kind: str, payload: str, cache: str) -> None:
    """What `_in_subprocess` runs: print `kind(**payload)` as JSON."""
    import jax

    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    fn = {"measure_point": measure_point, "count_sweep_compiles": count_sweep_compiles}[kind]
    print(json.dumps(fn(**json.loads(payload))))


def _in_subprocess(kind: str, payload: dict, cache: str | None = None) -> dict:
    """`measure_point` or `count_sweep_compiles` in a fresh Python process (with the
    persistent compilation cache `cache`, if given)."""
    code = "import sys; from experiments import bench_scale; bench_scale.worker(*sys.argv[1:])"
    out = subprocess.run([sys.executable, "-c", code, kind, json.dumps(payload), cache or ""],
                         cwd=harness.REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(cfg: Config) -> dict:
    import jax

    from experiments.lib import metrics

    h, w = cfg.grid
    cache = getattr(jax.config, "jax_compilation_cache_dir", None) if cfg.worker_cache else None
    points = []
    for t in cfg.frames:
        points.append(_in_subprocess("measure_point", {"shape": (t, h, w, cfg.dim),
                                                       "dtype": "float32",
                                                       "repeats": cfg.repeats}, cache))
        print(f"T={t}: {points[-1]['median_s'] * 1e3:.1f} ms, peak "
              f"{points[-1]['peak_rss_gib']:.2f} GiB", file=sys.stderr, flush=True)
    big = _in_subprocess("measure_point", {"shape": cfg.big_shape, "dtype": cfg.big_dtype,
                                           "repeats": 2}, cache)
    sweep = _in_subprocess("count_sweep_compiles", {"shape": (cfg.frames[0], h, w, cfg.dim)},
                           cache)
    return {
        "points": points,
        "time_exponent": metrics.loglog_slope([p["shape"][0] for p in points],
                                              [p["median_s"] for p in points]),
        "big": {**big, "limit_gib": cfg.limit_gib,
                "within_limit": big["peak_rss_gib"] <= cfg.limit_gib},
        "compilation": sweep,
    }


def plot(record: dict):
    from matplotlib.figure import Figure

    points = record["points"]
    frames = [p["shape"][0] for p in points]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.loglog(frames, [p["median_s"] for p in points], "o-", label="tfs_prune")
    a.loglog(frames, [points[0]["median_s"] * f / frames[0] for f in frames], "k--", lw=0.8,
             label="linear")
    a.set_xlabel("frames T")
    a.set_ylabel("seconds (median)")
    a.legend()
    b.plot(frames, [p["peak_rss_gib"] for p in points], "o-", label="peak RSS")
    b.plot(frames, [p["xla_planned_gib"] or 0 for p in points], "s--", label="XLA plan")
    b.set_xlabel("frames T")
    b.set_ylabel("GiB")
    b.legend()
    shape = points[0]["shape"]
    fig.suptitle(f"tfs_prune on (T, {shape[1]}, {shape[2]}, {shape[3]}) float32")
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('scale',)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    def cells(p, label):
        return (label, p["tokens"], md.spread({k: 1e3 * p[f"{k}_s"]
                                               for k in ("median", "min", "max")}, 0),
                f"{p['peak_rss_gib']:.2f}", f"{p['xla_planned_gib']:.2f}", f"{p['compile_s']:.1f}")

    big = record["big"]
    rows = [cells(p, p["shape"][0]) for p in record["points"]]
    rows.append(cells(big, "x".join(map(str, big["shape"])) + f" {big['dtype']}"))
    shape = record["points"][0]["shape"]
    table = md.table([f"frames T ({shape[1]}x{shape[2]}x{shape[3]})", "tokens",
                      "ms (min-max)", "peak RSS GiB", "XLA plan GiB", "compile s"], rows)
    comp, e = record["compilation"], record["time_exponent"]
    text = (f"{md.provenance(record)}\n\n{table}\n\nTime against T: fitted exponent {e:.2f} "
            f"(target at most 1.1: **{'met' if e <= 1.1 else 'not met'}**). The big case "
            f"peaks at {big['peak_rss_gib']:.2f} GiB, {'within' if big['within_limit'] else 'over'}"
            f" the {big['limit_gib']:g} GiB limit. Compile of the default config "
            f"{comp['default_backend_compile_s']:.1f} s; a {comp['sweep_points']}-point sweep "
            f"over traced fields compiled {comp['sweep_compilations']} program.")
    return {"scale": text}, text



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
