"""The one harness of every study and benchmark: flags, compile cache, the machine stamp and
the result files.

A study module defines

    Config                 a frozen dataclass: the full run
    SMOKE                  a tiny `Config` that CI runs
    run(config) -> dict    the numbers (JSON-able after `jsonable`)
    plot(record) -> Figure a matplotlib Figure of the written record (its JSON, reloaded)
    table(record)          `({README block: text}, TABLES.md section)`, and `BLOCKS` the
                           README blocks it fills (assembled by `experiments/tables.py`)

and hands its command line to `main`:

    def main(argv=None) -> int:
        return harness.main(sys.modules[__name__], argv)

A study with its own command line adds to it (all optional): `add_arguments(parser)`,
`before_run(args) -> int | None` (an exit status ends the command before anything runs),
`run_options(args, checkpoint) -> dict` (keywords of `run`; `checkpoint(numbers)` rewrites
`<name>.partial.json`, beside the record, with what is done so far: a run cut short leaves
it; the end of the run renames it to the record, a refusal deletes it), `report(record) -> int` (prints a summary; the exit status), and a `--out PATH`
argument names the record's file (no plot without `plot`). `gpu_acceptance` is one.

`main` owns the flags (`--smoke`, `--results DIR`, `--allow-dirty`, `--plot-only`), turns
on the persistent compilation cache (unless the module sets `COMPILE_CACHE = False`, as
benchmarks that time compiles do), runs `run`, and writes `<DIR>/<name>.json` and
`<DIR>/<name>.png`. Every record carries `study`, `harness` (the layout version), `command`,
`smoke`, `allow_dirty`, `config`, `wall_s`, `source_sha256` (`provenance.study_digest`: the
package, the experiments' library and harness, and the study's own modules) and `machine`
(`machine_info`: the full commit, whether the tree had changes outside `results/`, jax,
backend, device, load).

With git, a full run refuses a dirty tree (changes outside `results/`, untracked files
included) and a tree that changed while it ran: results are the code of one commit. A tree
without git (the GPU machine gets a copy, not a clone) is not refused: its record has
`commit: null` and the digest names its sources (a run whose sources changed while it ran
is refused there too). `--allow-dirty` writes anyway and the record says so. `--smoke` runs
are never refused (the record still says `dirty`) and never write into `results/` (default:
a fresh temporary folder).

`python -m experiments.harness --stale [--results DIR]` lists the records whose
`source_sha256` no longer matches the code (a record without one counts as stale), exit 1
when there is one.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

from experiments.lib import provenance

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
VERSION = 1  # the record layout; tables.py renders records of this version only
PARTIAL = ".partial.json"  # a run's checkpoints until it ends (`partial_path`)
RESERVED = ("study", "harness", "command", "smoke", "allow_dirty", "config", "machine",
            "wall_s", "source_sha256")


# ----------------------------------------------------------------------------------------
# Machine and commit


def _git(folder: pathlib.Path, *args) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(folder: pathlib.Path | None = None) -> dict:
    """`{"commit": 40 hex digits or None, "dirty": bool or None, "changed": [paths]}`.

    `dirty` is whether any path outside `results/` differs from the commit (staged,
    unstaged or untracked and not ignored); None without git.
    """
    folder = REPO if folder is None else folder
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=all") if commit else None
    if status is None:
        return {"commit": None, "dirty": None, "changed": []}
    paths = [line[3:] for line in status.splitlines() if line.strip()]
    changed = sorted(p for p in paths if not p.strip('"').startswith("results/"))
    return {"commit": commit.strip(), "dirty": bool(changed), "changed": changed[:20]}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info(state: dict | None = None) -> dict:
    """The one machine stamp of every record (`state`: a `git_state`, taken now if None)."""
    import jax

    state = git_state() if state is None else state
    try:
        import jaxlib

        jaxlib_version = jaxlib.__version__
    except (ImportError, AttributeError):
        jaxlib_version = None
    device = jax.devices()[0]
    return {
        "commit": state["commit"],
        "dirty": state["dirty"],
        "changed": state["changed"],
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib_version,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": load_average(),
    }


def refusal(state: dict, *, smoke: bool, allow_dirty: bool) -> str | None:
    """Why a run must not write results from this tree (None: it may). A tree without git
    is not refused: its records name their sources by digest alone."""
    if smoke or allow_dirty:
        return None
    if state["dirty"]:
        shown = ", ".join(state["changed"][:5]) + (", ..." if len(state["changed"]) > 5 else "")
        return f"the tree has changes outside results/ ({shown}): commit them first"
    return None


# ----------------------------------------------------------------------------------------
# Compilation


def fast_compile_flags() -> None:
    """Ask XLA's CPU backend for a cheap optimisation level (same results, about a third of
    the pruner's compile time); must run before JAX starts its backend."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


# ----------------------------------------------------------------------------------------
# Records


def jsonable(x):
    """Numbers, arrays and dataclasses as plain JSON (floats rounded to 5 significant digits)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(f"{float(x):.5g}")
    if isinstance(x, pathlib.Path):
        return str(x)
    return x


def study_name(module) -> str:
    spec = getattr(module, "__spec__", None)
    return (spec.name if spec is not None else module.__name__).rsplit(".", 1)[-1]


def command_line(name: str, argv: list[str] | None) -> str:
    """The command that produced a record, as typed from the repository root."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([f"python -m experiments.{name}", *map(shlex.quote, argv)])


def save_figure(figure, path: pathlib.Path) -> None:
    figure.savefig(path, dpi=110, bbox_inches="tight")


def parser_for(module, name: str) -> argparse.ArgumentParser:
    doc = (module.__doc__ or name).strip().splitlines()[0]
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=doc)
    parser.add_argument("--smoke", action="store_true",
                        help="the tiny SMOKE config (CI); writes to a temporary folder")
    parser.add_argument("--results", type=pathlib.Path, default=None,
                        help=f"folder for {name}.json and {name}.png (default results/)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write results from a tree with uncommitted changes (recorded)")
    parser.add_argument("--plot-only", action="store_true",
                        help=f"redraw {name}.png from the existing {name}.json")
    return parser


def output_paths(name: str, args, parser) -> pathlib.Path:
    """The record's path from a run's flags (`--out` where the study has it)."""
    out = getattr(args, "out", None)
    if out is not None:
        if args.smoke and out.resolve().parent == RESULTS.resolve():
            parser.error("smoke results never go to results/: pass another --out PATH")
        return out
    folder = args.results
    if args.smoke:
        if folder is not None and folder.resolve() == RESULTS.resolve():
            parser.error("smoke results never go to results/: pass another --results DIR")
        if folder is None:
            return pathlib.Path(tempfile.mkdtemp(prefix=f"{name}-smoke-")) / f"{name}.json"
    return (RESULTS if folder is None else folder) / f"{name}.json"


def write_record(path: pathlib.Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(record), indent=1) + "\n")


def changed_during_run(state: dict, digest: str, name: str) -> dict | None:
    """The tree's state after a run when it differs from `state` (git) or its sources
    differ from `digest` (with or without git); None when nothing changed."""
    after = git_state()
    now = provenance.study_digest(name)
    if (after["commit"], after["changed"]) == (state["commit"], state["changed"]) and \
            now == digest:
        return None
    return {**after, "source_sha256": now}


def main(module, argv: list[str] | None = None) -> int:
    """Run `module`'s study from the command line `argv`; the exit status (2: refused)."""
    name = study_name(module)
    parser = parser_for(module, name)
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.plot_only:
        return redraw(module, name, args, parser)
    early = module.before_run(args) if hasattr(module, "before_run") else None
    if early is not None:
        return early
    path = output_paths(name, args, parser)
    state = git_state()
    why = refusal(state, smoke=args.smoke, allow_dirty=args.allow_dirty)
    if why:
        print(f"{name}: refusing to run: {why} (or pass --allow-dirty, which the record "
              "keeps)", file=sys.stderr)
        return 2
    if args.smoke:
        fast_compile_flags()
    if getattr(module, "COMPILE_CACHE", True):
        from tfs_jax.compile_cache import enable_compile_cache  # noqa: PLC0415  (loads jax)

        enable_compile_cache()  # the one place that knows the cache's folder
    record = run_study(module, name, args, path, state, command_line(name, argv))
    if record is None:
        return 2
    if hasattr(module, "plot"):
        save_figure(module.plot(record), path.with_suffix(".png"))
    print(f"wrote {path}" + (" and its .png" if hasattr(module, "plot") else "")
          + f" in {record['wall_s']:.0f} s")
    return module.report(record) if hasattr(module, "report") else 0


def redraw(module, name: str, args, parser) -> int:
    """`--plot-only`: the figure again from the written record."""
    if not hasattr(module, "plot"):
        parser.error(f"{name} draws no plot")
    folder = RESULTS if args.results is None else args.results
    record = json.loads((folder / f"{name}.json").read_text())
    save_figure(module.plot(record), folder / f"{name}.png")
    print(f"redrew {folder / name}.png")
    return 0


def partial_path(path: pathlib.Path) -> pathlib.Path:
    """Where a run's checkpoints go until it ends: `<name>.partial.json` beside `path`."""
    return path.with_suffix(PARTIAL)


def is_partial(path: pathlib.Path) -> bool:
    """Whether `path` is a run's checkpoint file (not a record the tables read)."""
    return path.name.endswith(PARTIAL)


def run_study(module, name: str, args, path: pathlib.Path, state: dict,
              command: str) -> dict | None:
    """Run the study and write its record at `path` (returned); None, with a line on
    stderr and nothing written, when its tree or sources changed during the run.

    Checkpoints go to `partial_path(path)`, never to `path`: the end of a run renames the
    checkpoint file to `path`, a refusal deletes it, and a run cut short (an exception, a
    kill) leaves it for a person to read."""
    config = module.SMOKE if args.smoke else module.Config()
    digest = provenance.study_digest(name)
    header = {"study": name, "harness": VERSION, "command": command,
              "smoke": args.smoke, "allow_dirty": args.allow_dirty, "config": config,
              "source_sha256": digest, "machine": machine_info(state)}
    start = time.perf_counter()

    def checkpoint(numbers: dict) -> None:
        write_record(partial, {**header, "wall_s": time.perf_counter() - start, **numbers})

    partial = partial_path(path)

    options = module.run_options(args, checkpoint) if hasattr(module, "run_options") else {}
    numbers = module.run(config, **options)
    wall = time.perf_counter() - start
    after = changed_during_run(state, digest, name)
    if after is not None:
        why = refusal({**after, "dirty": True, "changed": ["(the tree changed during the run)"]},
                      smoke=args.smoke, allow_dirty=args.allow_dirty)
        if why:
            print(f"{name}: not writing results: {why}", file=sys.stderr)
            partial.unlink(missing_ok=True)
            return None
        header["machine"]["changed_during_run"] = after
    clash = set(numbers) & set(RESERVED)
    if clash:
        raise ValueError(f"{name}.run returned keys the harness owns: {sorted(clash)}")
    header["machine"]["load_average_end"] = load_average()
    record = jsonable({**header, "wall_s": wall, **numbers})
    write_record(partial, record)
    partial.replace(path)  # one rename: `path` holds either the old record or the new one
    return record


# ----------------------------------------------------------------------------------------
# Staleness


def stale_reason(record: dict, name: str | None = None) -> str | None:
    """Why `record` no longer stands for the code (None: its sources are today's)."""
    name = record.get("study", name)
    recorded = record.get("source_sha256")
    if recorded is None:
        return "the record has no source digest (written before digests were recorded)"
    now = provenance.study_digest(name)
    if now != recorded:
        return (f"its sources changed since it ran (digest {recorded[:12]}, now "
                f"{now[:12]})")
    return None


def stale_records(folder: pathlib.Path | None = None) -> dict[str, str]:
    """`{study: why}` of the records in `folder` (default results/) whose sources changed."""
    folder = RESULTS if folder is None else folder
    out = {}
    for path in sorted(p for p in folder.glob("*.json") if not is_partial(p)):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "study" in record:
            why = stale_reason(record, path.stem)
            if why:
                out[path.stem] = why
    return out


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.harness",
                                     description="What the harness can say about results.")
    parser.add_argument("--stale", action="store_true", required=True,
                        help="list the studies whose recorded source digest no longer "
                             "matches the code (exit 1 if any)")
    parser.add_argument("--results", type=pathlib.Path, default=None,
                        help="folder of the records (default results/)")
    args = parser.parse_args(argv)
    found = stale_records(args.results)
    for name, why in found.items():
        print(f"{name}: {why}")
    if not found:
        print(f"no stale record in {RESULTS if args.results is None else args.results}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(cli())
