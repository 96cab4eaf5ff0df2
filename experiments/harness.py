"""The one harness of every study and benchmark: flags, compile cache, the machine stamp and
the result files.

A study module defines

    Config                 a frozen dataclass: the full run
    SMOKE                  a tiny `Config` that CI runs
    run(config) -> dict    the numbers (JSON-able after `jsonable`)
    plot(record) -> Figure a matplotlib Figure of the written record (its JSON, reloaded)

and hands its command line to `main`:

    def main(argv=None) -> int:
        return harness.main(sys.modules[__name__], argv)

`main` owns the flags (`--smoke`, `--results DIR`, `--allow-dirty`, `--plot-only`), turns
on the persistent compilation cache (unless the module sets `COMPILE_CACHE = False`, as
benchmarks that time compiles do), runs `run`, and writes `<DIR>/<name>.json` and
`<DIR>/<name>.png`. Every record carries `study`, `harness` (the layout version), `command`,
`smoke`, `allow_dirty`, `config`, `wall_s` and `machine` (`machine_info`: the full commit,
whether the tree had changes outside `results/`, jax, backend, device, load).

A full run refuses a dirty tree (changes outside `results/`, untracked files included) or a
tree without git, and a tree that changed while it ran: results are the code of one commit.
`--allow-dirty` writes anyway and the record says so. `--smoke` runs are never refused (the
record still says `dirty`) and never write into `results/` (default: a fresh temporary
folder).
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

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
VERSION = 1  # the record layout; tables.py renders records of this version only
RESERVED = ("study", "harness", "command", "smoke", "allow_dirty", "config", "machine",
            "wall_s")


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
    """Why a run must not write results from this tree (None: it may)."""
    if smoke or allow_dirty:
        return None
    if state["commit"] is None:
        return "no git commit found: results must name the commit they ran on"
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


def enable_compile_cache() -> None:
    """A persistent XLA compilation cache (`$TFS_JAX_CACHE_DIR`, default in the user cache)."""
    import jax

    if getattr(jax.config, "jax_compilation_cache_dir", None):
        return  # already chosen (by the test suite's conftest, say)
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    path = os.environ.get("TFS_JAX_CACHE_DIR", str(default / "tfs-jax" / "xla"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


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


def main(module, argv: list[str] | None = None) -> int:
    """Run `module`'s study from the command line `argv`; the exit status (2: refused)."""
    name = study_name(module)
    parser = parser_for(module, name)
    args = parser.parse_args(argv)
    folder = args.results
    if args.plot_only:
        folder = RESULTS if folder is None else folder
        record = json.loads((folder / f"{name}.json").read_text())
        save_figure(module.plot(record), folder / f"{name}.png")
        print(f"redrew {folder / name}.png")
        return 0
    if args.smoke:
        if folder is not None and folder.resolve() == RESULTS.resolve():
            parser.error("smoke results never go to results/: pass another --results DIR")
        folder = pathlib.Path(tempfile.mkdtemp(prefix=f"{name}-smoke-")) if folder is None else folder
    folder = RESULTS if folder is None else folder
    state = git_state()
    why = refusal(state, smoke=args.smoke, allow_dirty=args.allow_dirty)
    if why:
        print(f"{name}: refusing to run: {why} (or pass --allow-dirty, which the record "
              "keeps)", file=sys.stderr)
        return 2
    if args.smoke:
        fast_compile_flags()
    if getattr(module, "COMPILE_CACHE", True):
        __import__("tfs_jax").enable_compile_cache()
    config = module.SMOKE if args.smoke else module.Config()
    machine = machine_info(state)
    start = time.perf_counter()
    numbers = module.run(config)
    wall = time.perf_counter() - start
    after = git_state()
    if (after["commit"], after["changed"]) != (state["commit"], state["changed"]):
        why = refusal({**after, "dirty": True, "changed": ["(the tree changed during the run)"]},
                      smoke=args.smoke, allow_dirty=args.allow_dirty)
        if why:
            print(f"{name}: not writing results: {why}", file=sys.stderr)
            return 2
        machine["changed_during_run"] = after
    clash = set(numbers) & set(RESERVED)
    if clash:
        raise ValueError(f"{name}.run returned keys the harness owns: {sorted(clash)}")
    machine["load_average_end"] = load_average()
    record = jsonable({"study": name, "harness": VERSION, "command": command_line(name, argv),
                       "smoke": args.smoke, "allow_dirty": args.allow_dirty,
                       "config": config, "machine": machine, "wall_s": wall, **numbers})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    save_figure(module.plot(record), folder / f"{name}.png")
    print(f"wrote {path} and {name}.png in {wall:.0f} s")
    return 0
