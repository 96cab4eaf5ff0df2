"""The README's result tables, generated from results/*.json (so the two never disagree).

Commands (tests/test_readme.py checks that each table appears verbatim in README.md):

    python -m experiments.tables            # print every table as markdown
    python -m experiments.tables --readme   # rewrite README.md between <!-- name --> markers
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
RATIOS = ("0.5", "0.35", "0.25", "0.1")


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header, rows) -> str:
    lines = [_row(header), _row(["---"] * len(header))] + [_row(r) for r in rows]
    return "\n".join(lines)


def overhead() -> str:
    """CPU cost of `tfs_prune` against one read of the video (bench_overhead)."""
    rows = [
        (f"{r['shape'][0]}x{r['shape'][1]}x{r['shape'][2]}x{r['shape'][3]}", r["tokens"],
         f"{r['total_ms']:.1f}", f"{r['read_ms']:.2f}", f"{r['ratio']:.0f}x", f"{r['compile_s']:.1f}")
        for r in _load("bench_overhead")["rows"]
    ]
    return _table(["T x H x W x D", "tokens", "tfs_prune ms", "one read ms", "ratio", "compile s"], rows)


def scale() -> str:
    """Long videos: time and peak memory from T=32 to 256, the big bf16 case (bench_scale)."""
    record = _load("bench_scale")
    rows = [(p["shape"][0], f"{p['median_s'] * 1e3:.0f}", f"{p['peak_rss_gib']:.2f}")
            for p in record["points"]]
    big = record["big"]
    rows.append((f"64x24x24x3584 bf16", f"{big['median_s'] * 1e3:.0f}", f"{big['peak_rss_gib']:.2f}"))
    table = _table(["frames T (16x16x1536)", "ms", "peak RSS GiB"], rows)
    comp = record["compilation"]
    return (f"{table}\n\nTime against T: fitted exponent {record['time_exponent']:.2f}. "
            f"Compile of the default config {comp['default_backend_compile_s']:.1f} s; "
            f"a {comp['sweep_points']}-point sweep over traced fields compiled "
            f"{comp['sweep_compilations']} program.")


def prefill() -> str:
    """LM prefill: all tokens vs pruned, pruner time included (bench_prefill)."""
    record = _load("bench_prefill")
    rows = [
        (r["method"], f"{r['retain_ratio']:.0%}", f"{r['tokens_kept']}/{r['slots']}",
         f"{r['prune_s']:.3f}", f"{r['prefill_s']:.2f}", f"{r['e2e_s']:.2f}", f"{r['speedup']:.1f}x")
        for r in record["rows"]
        if r["retain_ratio"] in (0.5, 0.25) or r["method"] == "tfs"
    ]
    full = record["full_prefill"]["median_s"] if isinstance(record.get("full_prefill"), dict) else None
    table = _table(["method", "retain", "kept/slots", "prune s", "prefill s", "end-to-end s",
                    "speed-up"], rows)
    return table if full is None else f"Unpruned prefill: {full:.2f} s.\n\n{table}"


def real_clips() -> str:
    """Saliency mass per kept share and coverage on the bundled clips (real_clips)."""
    means = _load("real_clips")["mean_over_clips"]
    rows = []
    for method, by_ratio in means.items():
        cells = [method]
        for ratio in ("0.25", "0.1"):
            r = by_ratio[ratio]
            cells += [f"{r['tokens_kept']:.0f}", f"{r['mass_enrichment']:.3f}", f"{r['coverage']:.3f}"]
        rows.append(cells)
    return _table(["method", "kept @25%", "mass/share", "coverage", "kept @10%", "mass/share",
                   "coverage"], rows)


def retention() -> str:
    """Accuracy kept relative to all tokens on the synthetic video QA task (retention)."""
    results = _load("retention")["results"]
    full = results["full"]
    rows = []
    for method, by_ratio in results.items():
        if method == "full":
            continue
        cells = [method]
        for ratio in ("0.5", "0.25", "0.1"):
            r = by_ratio[ratio]
            lo, hi = r["relative_ci95"]
            cells.append(f"{r['relative_to_full']:.3f} ({lo:.2f}-{hi:.2f}) [{r['tokens_kept_mean']:.0f}]")
        rows.append(cells)
    head = (f"All tokens ({full['tokens_kept_mean']:.0f}): accuracy {full['accuracy']:.3f} "
            f"(95% CI {full['accuracy_ci95'][0]:.3f}-{full['accuracy_ci95'][1]:.3f}).")
    table = _table(["method", "@50% [kept]", "@25% [kept]", "@10% [kept]"], rows)
    return f"{head}\n\n{table}"


def ablations() -> str:
    """Factor subsets and static variants at 25% (ablations)."""
    record = _load("ablations")
    scores = record["factor_weights"]["scores"]
    rows = [(name, f"{s['tokens_kept']:.0f}", f"{s['mass_enrichment']:.3f}", f"{s['coverage']:.3f}")
            for name, s in scores.items() if not name.startswith("grid")]
    rows += [(name, f"{s['tokens_kept']:.0f}", f"{s['mass_enrichment']:.3f}", f"{s['coverage']:.3f}")
             for name, s in record["static_variants"].items()]
    compile_info = record["factor_weights"]["compile"]
    grid = sum(name.startswith("grid") for name in scores)
    table = _table(["variant (25%)", "kept", "mass/share", "coverage"], rows)
    return (f"{table}\n\nThe {len(scores)} factor-weight settings ({grid} of them a grid) ran as "
            f"one vmapped call: {compile_info['traces']} trace, "
            f"{compile_info['jit_cache_entries']} compiled program.")


TABLES = {"overhead": overhead, "scale": scale, "prefill": prefill, "real_clips": real_clips,
          "retention": retention, "ablations": ablations}


def write_readme(path: pathlib.Path = ROOT / "README.md") -> None:
    """Put every table between its `<!-- name -->` and `<!-- /name -->` markers."""
    text = path.read_text()
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name} --> ... <!-- /{name} --> markers")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's tables")
    if parser.parse_args().readme:
        write_readme()
        return
    for name, make in TABLES.items():
        print(f"<!-- {name} -->\n{make()}\n")


if __name__ == "__main__":
    main()
