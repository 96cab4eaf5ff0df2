"""Speed: the pruner's overhead and the LM's prefill time, gathered into one table and plot.

    python -m experiments.speed          # results/speed.{json,png}
    python -m experiments.speed --smoke  # the same on whatever exists (CI)

Reads `results/bench_overhead.json` (the kernels' benchmark) and
`results/bench_prefill.json` (the VLM prefill benchmark, paper Table 2 layout) when they
exist, and writes their rows side by side, with each source's command and machine, to
`results/speed.json` and one PNG. Nothing is measured here: the numbers are the
benchmarks' own, on the machines they name. A missing source is reported as missing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

from experiments import _common


@dataclasses.dataclass(frozen=True)
class Config:
    sources: tuple = ("bench_overhead", "bench_prefill")
    # Columns tried, in order, for the plot of each source's rows.
    x_keys: tuple = ("retain_ratio", "tokens", "num_tokens", "frames", "shape")
    y_keys: tuple = ("speedup", "prune_s", "median_s", "overhead_s", "e2e_s", "seconds",
                     "time_s", "ms")
    group_keys: tuple = ("method", "impl", "kernel", "backend", "name", "dtype")


def table_rows(record) -> list[dict]:
    """The rows of a benchmark record: its `rows` list, else the first list of dicts found
    at the top level, else every top-level dict of scalars (keyed by name)."""
    if isinstance(record, list):
        return [r for r in record if isinstance(r, dict)]
    if not isinstance(record, dict):
        return []
    if isinstance(record.get("rows"), list):
        return [r for r in record["rows"] if isinstance(r, dict)]
    for value in record.values():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return value
    return [{"name": k, **v} for k, v in record.items()
            if isinstance(v, dict) and v and all(_scalar(x) for x in v.values())]


def _scalar(x) -> bool:
    return isinstance(x, (int, float, str, bool)) or x is None


def gather(cfg: Config, folder: pathlib.Path) -> dict:
    sources = {}
    for name in cfg.sources:
        path = folder / f"{name}.json"
        shown = f"{folder.name}/{path.name}"  # no machine-specific absolute paths in results
        if not path.is_file():
            sources[name] = {"present": False, "path": shown}
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            sources[name] = {"present": True, "path": shown, "error": str(err)}
            continue
        rows = table_rows(record)
        meta = record if isinstance(record, dict) else {}
        sources[name] = {
            "present": True, "path": shown,
            "command": meta.get("command"), "machine": meta.get("machine"),
            "config": meta.get("config"),
            "rows": [{k: v for k, v in r.items() if _scalar(v) or isinstance(v, list)}
                     for r in rows],
        }
    return sources


def _pick(rows, keys):
    return next((k for k in keys if rows and all(k in r for r in rows)), None)


def panels(record: dict, cfg: Config) -> list[tuple[str, list, str, str, str | None]]:
    """`(source, rows, x, y, group)` for each plot: per source with rows, its x column and
    up to two y columns (e.g. speed-up and the pruner's own seconds)."""
    out = []
    for name, src in record["sources"].items():
        rows = src.get("rows") or []
        x, g = _pick(rows, cfg.x_keys), _pick(rows, cfg.group_keys)
        ys = [k for k in cfg.y_keys if rows and all(k in r for r in rows)][:2]
        out += [(name, rows, x, y, g) for y in ys if x is not None]
    return out


def plot(record: dict, cfg: Config):
    from matplotlib.figure import Figure

    todo = panels(record, cfg)
    fig = Figure(figsize=(6 * max(1, len(todo)), 4.5), layout="constrained")
    axes = fig.subplots(1, max(1, len(todo)), squeeze=False)[0]
    if not todo:
        axes[0].text(0.5, 0.5, "no plottable benchmark results:\n" + "\n".join(
            f"{k}.json: {'found' if v.get('present') else 'missing'}"
            for k, v in record["sources"].items()), ha="center", va="center")
        axes[0].set_axis_off()
    for ax, (name, rows, x, y, g) in zip(axes, todo):
        groups = {}
        for r in rows:
            if isinstance(r[x], (int, float)) and isinstance(r[y], (int, float)):
                groups.setdefault(r.get(g, name) if g else name, []).append((r[x], r[y]))
        for label, pts in groups.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=str(label))
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{name}: {y}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def main(argv=None) -> None:
    parser = _common.study_parser(__doc__)
    parser.add_argument("--sources", type=pathlib.Path, default=_common.RESULTS,
                        help="folder holding bench_overhead.json, bench_prefill.json")
    args = parser.parse_args(argv)
    cfg = Config()
    record = {"config": dataclasses.asdict(cfg), "smoke": args.smoke,
              "sources": gather(cfg, args.sources)}
    path = _common.write_results(args.results, "speed", record, plot(record, cfg), argv)
    found = [k for k, v in record["sources"].items() if v.get("present")]
    print(f"wrote {path} (sources found: {', '.join(found) or 'none'})", file=sys.stderr)


if __name__ == "__main__":
    main()
