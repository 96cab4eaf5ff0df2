"""Paper Table 2 for Qwen2.5-VL-7B on this machine: LM prefill, pruner overhead, pruned
prefill, end to end and speed-up, extrapolated from components timed at the model's widths.

    python -m experiments.bench_table2          # results/bench_table2.{json,png}
    python -m experiments.bench_table2 --smoke  # toy widths, one short prompt (CI)

A whole 7B model does not fit this machine's time (one LM layer over 8k tokens is about
4 TFLOP), so the benchmark times the stages and components of `tfs_jax.models` (the code
`Model.forward` runs) at Qwen2.5-VL-7B's real widths (`_table2_parts.CONFIGS`), float32,
random parameters, and multiplies each by its count in the model:

- the vision tower: the patch embedding, one windowed block (x 28), one full-attention
  block (x 4, `fullatt_block_indexes`) and the patch merger;
- the LM prefill over the prompt `Model.prompt` builds (padded to its bucket of 128):
  one decoder layer with chunked attention (x 28), plus the rest of `Model.prefill` (the
  embedding lookup, the final norm, the last row's LM head), once;
- the pruner, `Model.prune_videos` (`serving.prune_video_embeds`: `tfs_prune` or
  `baselines.prune` on the merged `(t, 16, 16)` grid at D = 3584, and `serving.compact`),
  timed whole: not an extrapolation.

Prompts: `frames` frames at 448 x 448 (temporal patch 2: `frames / 2 * 256` merged video
tokens), between `prefix_len` and `suffix_len` text tokens (Qwen's chat template around one
video and a short question). The pruners see video-like tokens: a bundled clip's frames (one
per temporal patch) through DINOv2-S/14, projected to 3584 by a fixed random matrix. Each
row's LM length is that of the prompt its pruner leaves (the baselines keep exactly `K`;
TFS may keep fewer), and rows of one padded length share one timed layer.

Timing: every component, every distinct LM length and every (method, ratio) pruner is one
job; `rounds` rounds run every job once in a fresh random order (jobs whose first run took
under 5 s, most pruners among them, run in `pruner_rounds` rounds); a cell is the median of
its runs; compiles are excluded and reported. The columns follow the paper's (`B`: a padded LM length):

    vanilla prefill = 28 x layer(B unpruned) + rest(B unpruned)            (extrapolated)
    pruned prefill  = 28 x layer(B pruned) + rest(B pruned)                (extrapolated)
    end to end      = pruner + pruned prefill                              (extrapolated)
    speed-up        = vanilla prefill / end to end                         (extrapolated)
    pruner share    = pruner / end to end                                  (extrapolated)
    vision tower    = patch embed + 28 x windowed + 4 x full + merger      (extrapolated)

The paper's end to end leaves the vision tower out; `speedup_with_vision` puts it back in
both numerator and denominator. Every extrapolated number sits under a row's
`extrapolated` key, measured ones under `measured`, and the table marks the former.
"""

from __future__ import annotations

import dataclasses
import sys

from experiments import harness
from experiments.lib import render as md

EXTRAPOLATED = "extrapolation: components timed once, multiplied by their counts in the model"
PAPER = {"speedup": 1.7, "prune_s": 0.46, "e2e_s": 1.22, "vanilla_s": 2.11}
GOAL = {"retain_ratio": 0.5, "speedup": 1.7, "pruner_share": 0.05}
FIT_MIN_LENGTHS = 3  # `layer_fit` has 2 unknowns: a third length is the first it can miss


@dataclasses.dataclass(frozen=True)
class Config:
    frames: tuple = (32, 64)  # 4,096 and 8,192 merged video tokens at 448 px
    image_size: int = 448
    prefix_len: int = 15  # system prompt, user turn, <|vision_start|>
    suffix_len: int = 14  # <|vision_end|>, a short question, the assistant's turn
    ratios: tuple = (0.5, 0.25, 0.1)
    methods: tuple = ("tfs", "uniform", "evs", "divprune", "vidcom2")
    model: str = "qwen2.5-vl-7b"  # a key of `_table2_parts.CONFIGS`
    clip: str = "bikes"
    fps: float = 2.0  # frames per second of the sampled video (second_per_grid_ts = 2 / fps)
    encoder: str = "dinov2"
    rounds: int = 2  # every job; each round of the full run takes about 4 minutes
    pruner_rounds: int = 5  # jobs whose first run took under 5 s (most pruners) run this many
    seed: int = 0


SMOKE = Config(frames=(4,), ratios=(0.5, 0.25), methods=("tfs", "uniform", "divprune"),
               model="tiny", encoder="pixels", rounds=2, pruner_rounds=3)


def prompt_shape(cfg: Config, frames: int) -> dict:
    """The merged grid, patch count and token counts of one prompt."""
    from experiments._table2_parts import sizes

    v = sizes(cfg.model)["vision"]
    side = cfg.image_size // v["patch"]
    if cfg.image_size % (v["patch"] * v["merge"]) or frames % v["temporal_patch"]:
        raise ValueError(f"image_size={cfg.image_size} must be a multiple of "
                         f"{v['patch'] * v['merge']} and frames={frames} of "
                         f"{v['temporal_patch']}")
    t, grid = frames // v["temporal_patch"], side // v["merge"]
    video = t * grid * grid
    return {"frames": frames, "grid_thw": [t, side, side], "merged_grid": [t, grid, grid],
            "patches": t * side * side, "video_tokens": video,
            "text_tokens": cfg.prefix_len + cfg.suffix_len,
            "sequence_tokens": video + cfg.prefix_len + cfg.suffix_len}


# ----------------------------------------------------------------------------------------
# Measuring


def build_jobs(cfg: Config) -> tuple[dict, dict, dict]:
    """Every job of the run; per (prompt, method, ratio) what its pruner kept and the LM
    length it leads to; and `{component: why}` for each one `tfs_jax.models` lacks."""
    from experiments import _table2_parts as parts

    full, model = parts.bench_model(cfg.model, cfg.seed)
    jobs, kept, prompts, missing = {}, {}, {}, {}
    for frames in cfg.frames:
        shape = prompt_shape(cfg, frames)
        pruners, pruned, padded = pruner_jobs(cfg, full, model, shape)
        jobs.update(pruners)
        kept.update(pruned)
        prompts = {**padded, **prompts}  # one prompt per padded length
        vision, absent = parts.vision_jobs(model, shape["grid_thw"], cfg.seed)
        jobs.update({f"vision/{frames}/{name}": job for name, job in vision.items()})
        missing.update({f"vision/{name}": why for name, why in absent.items()})
    for n, p in sorted(prompts.items()):
        for name, job in parts.lm_jobs(model, p).items():
            jobs[f"lm/{name}/{n}"] = job
    return jobs, kept, missing


def pruner_jobs(cfg: Config, full, model, shape: dict) -> tuple[dict, dict, dict]:
    """One prompt's pruner jobs; `{(frames, method, ratio): (kept, slots, L', B)}` with
    the unpruned prompt's too; and `{B: Prompt}`, the prompts `Model.prompt` builds."""
    import jax.numpy as jnp

    from experiments import _table2_parts as parts

    frames, (t, grid, _) = shape["frames"], shape["merged_grid"]
    embeds = jnp.asarray(parts.video_tokens(cfg.clip, cfg.encoder, t, grid,
                                            full.text.hidden_size, cfg.seed))
    ids = parts.prompt_ids(cfg.prefix_len, shape["video_tokens"], cfg.suffix_len,
                           full.video_token_id)
    seconds = [full.vision.temporal_patch_size / cfg.fps]
    jobs, kept, prompts = {}, {}, {}
    cases = [("unpruned", 1.0)] + [(m, r) for m in cfg.methods for r in cfg.ratios]
    for method, ratio in cases:
        out = None
        if method != "unpruned":
            name = f"prune/{frames}/{method}@{ratio:g}"
            jobs[name], out = parts.pruner_job(model, embeds, [shape["grid_thw"]], method,
                                               ratio, cfg.seed)
            print(f"{name}: {int(out.num_kept)} kept (first call, compile included: "
                  f"{jobs[name].compile_s:.1f} s)", file=sys.stderr, flush=True)
        p = model.prompt(ids, video_embeds=embeds, video_grid_thw=[shape["grid_thw"]],
                         second_per_grid_ts=seconds, pruned=out)
        prompts.setdefault(int(p.ids.shape[0]), p)
        video = shape["video_tokens"]
        k, slots = (video, video) if out is None else (int(out.num_kept), int(out.indices.shape[0]))
        kept[(frames, method, ratio)] = (k, slots, p.length, int(p.ids.shape[0]))
    return jobs, kept, prompts


# ----------------------------------------------------------------------------------------
# The table's arithmetic


def extrapolate(prune_s: float, vanilla_s: float, pruned_s: float, vision_s) -> dict:
    """A row's derived columns from its components (medians, seconds).

    `vision_s` may be None (the tower is missing): its columns are then None too.
    """
    e2e = prune_s + pruned_s
    out = {"vanilla_prefill_s": vanilla_s, "pruned_prefill_s": pruned_s, "e2e_s": e2e,
           "speedup": vanilla_s / e2e, "pruner_share": prune_s / e2e, "vision_s": vision_s,
           "speedup_with_vision": None}
    if vision_s is not None:
        out["speedup_with_vision"] = (vision_s + vanilla_s) / (vision_s + e2e)
    return out


def prefill_seconds(layer_s: float, rest_s: float, layers: int) -> float:
    """`layers` decoder layers at one length, plus the rest of the prefill (embedding,
    final norm, last row's LM head) at that length."""
    return layers * layer_s + rest_s


def vision_seconds(parts_s: dict, counts: dict):
    """The tower from its timed parts (None when a part is missing)."""
    if any(parts_s.get(name) is None for name in counts):
        return None
    return sum(counts[name] * parts_s[name] for name in counts)


def counts_of(cfg: Config) -> dict:
    """How many times the model runs each timed component."""
    from experiments._table2_parts import sizes

    v, lm = sizes(cfg.model)["vision"], sizes(cfg.model)["lm"]
    return {"vision": {"patch_embed": 1, "window_block": v["depth"] - len(v["fullatt"]),
                       "full_block": len(v["fullatt"]), "merger": 1},
            "lm_layer": lm["layers"], "lm_rest": 1}


def layer_fit(layer_s: dict) -> dict:
    """Least squares `t(n) = a n + b n^2` through one LM layer's median times against its
    padded length `n` (the projections and MLP are linear in `n`, attention quadratic): a
    cross-check of the single timings, whose noise on a shared machine can reach tens of
    percent. Returns `{"a", "b", "fitted_s": {n: t(n)}, "residuals": {n: measured / t(n) - 1}}`,
    or None with fewer than 3 distinct lengths: two unknowns through one or two points fit
    exactly, so residuals of 0 would check nothing."""
    import numpy as np

    if len(set(layer_s)) < FIT_MIN_LENGTHS:
        return None
    n = np.array(sorted(layer_s), float)
    t = np.array([layer_s[int(k)] for k in n])
    (a, b), *_ = np.linalg.lstsq(np.stack([n, n * n], 1), t, rcond=None)
    fitted = a * n + b * n * n
    return {"a": float(a), "b": float(b),
            "fitted_s": {str(int(k)): float(f) for k, f in zip(n, fitted)},
            "residuals": {str(int(k)): float(v / f - 1) for k, v, f in zip(n, t, fitted)}}


def fitted_speedup(fitted: dict, prune_s: float, rest: tuple, lengths: tuple, layers: int) -> float:
    """The speed-up with each layer time read off `layer_fit`'s `fitted_s`: `(layers x
    t(B0) + rest0) / (prune + layers x t(B) + rest)`, `lengths = (B0, B)`, `rest = (rest0,
    rest)`."""
    t = [fitted[str(n)] for n in lengths]
    return (layers * t[0] + rest[0]) / (prune_s + layers * t[1] + rest[1])


def assemble(cfg: Config, jobs: dict, kept: dict, missing: dict) -> dict:
    """The record's components (spreads of the timed jobs), the layer fit, and the rows
    (medians, derived)."""
    from experiments._table2_parts import spread

    timed = {name: {**spread(job.runs_s), "compile_s": job.compile_s}
             for name, job in jobs.items()}
    med = {name: s["median"] for name, s in timed.items()}
    counts, layers = counts_of(cfg), counts_of(cfg)["lm_layer"]
    fit = layer_fit({int(k.split("/")[-1]): v for k, v in med.items()
                     if k.startswith("lm/layer/")})

    def prefill(length):
        return prefill_seconds(med[f"lm/layer/{length}"], med[f"lm/rest/{length}"], layers)

    rows = []
    for frames in cfg.frames:
        vision = vision_seconds({p: med.get(f"vision/{frames}/{p}") for p in counts["vision"]},
                                counts["vision"])
        full = kept[(frames, "unpruned", 1.0)][3]
        cases = [("unpruned", 1.0)] + [(m, r) for r in cfg.ratios for m in cfg.methods]
        for method, ratio in cases:
            k, slots, length, padded = kept[(frames, method, ratio)]
            # only the unpruned row has no pruner; a pruned row's missing job is a bug
            prune_s = 0.0 if method == "unpruned" else med[f"prune/{frames}/{method}@{ratio:g}"]
            x = extrapolate(prune_s, prefill(full), prefill(padded), vision)
            x["speedup_fit"] = None if fit is None else fitted_speedup(
                fit["fitted_s"], prune_s, (med[f"lm/rest/{full}"], med[f"lm/rest/{padded}"]),
                (full, padded), layers)
            rows.append({"frames": frames, "method": method, "retain_ratio": ratio,
                         "video_tokens": prompt_shape(cfg, frames)["video_tokens"],
                         "tokens_kept": k, "video_slots": slots, "sequence_tokens": length,
                         "lm_length": padded, "measured": {"prune_s": prune_s},
                         "extrapolated": x})
    return {"components": timed, "counts": counts, "layer_fit": fit, "rows": rows,
            "missing": missing, "goal": goal(rows, cfg)}


def goal(rows: list[dict], cfg: Config) -> dict:
    """Per prompt, every method at the goal's ratio: speed-up, pruner share, and whether
    both meet the goal (speed-up >= 1.7, the paper's; pruner < 5% of end to end)."""
    out = {}
    for r in rows:
        if r["retain_ratio"] != GOAL["retain_ratio"] or r["method"] == "unpruned":
            continue
        x = r["extrapolated"]
        out.setdefault(str(r["frames"]), {})[r["method"]] = {
            "speedup": x["speedup"], "pruner_share": x["pruner_share"],
            "met": bool(x["speedup"] >= GOAL["speedup"]
                        and x["pruner_share"] < GOAL["pruner_share"])}
    return out


def run(cfg: Config) -> dict:
    from experiments import _table2_parts as parts

    jobs, kept, missing = build_jobs(cfg)
    parts.time_jobs(jobs, cfg.rounds, cfg.seed, cheap_rounds=cfg.pruner_rounds)
    sizes = parts.sizes(cfg.model)
    return {
        "sizes": sizes,
        "prompts": {str(f): prompt_shape(cfg, f) for f in cfg.frames},
        "inputs": (f"pruners: {cfg.clip} clip, {cfg.encoder} tokens of one frame per temporal "
                   f"patch, projected to D={sizes['lm']['hidden']} by a fixed random Gaussian "
                   "matrix; vision tower and LM: random float32 parameters and inputs"),
        "extrapolation": {
            "note": EXTRAPOLATED,
            "vanilla_prefill_s": "lm_layer(B) x layers + lm_rest(B), B the unpruned prompt's "
                                 "padded length",
            "pruned_prefill_s": "lm_layer(B) x layers + lm_rest(B), B the pruned prompt's "
                                "padded length",
            "e2e_s": "prune_s (measured whole) + pruned_prefill_s",
            "speedup": "vanilla_prefill_s / e2e_s",
            "pruner_share": "prune_s / e2e_s",
            "vision_s": "patch_embed + window_block x n + full_block x n + merger",
            "speedup_with_vision": "(vision_s + vanilla_prefill_s) / (vision_s + e2e_s)",
            "speedup_fit": "speedup with each layer time read off layer_fit (a n + b n^2, "
                           "least squares over every timed length) instead of its own timing; "
                           "None (no fit) with fewer than 3 lengths"},
        "paper": PAPER, "goal_rule": GOAL,
        **assemble(cfg, jobs, kept, missing),
    }


# ----------------------------------------------------------------------------------------
# Table and plot

MARK = "†"  # an extrapolated number


def _seconds(x) -> str:
    return "missing" if x is None else f"{x:.3g}"


def _row_cells(r: dict) -> list:
    x = r["extrapolated"]
    ratio = "-" if r["method"] == "unpruned" else f"{100 * r['retain_ratio']:g}%"
    with_vision = "-" if x["speedup_with_vision"] is None else f"{x['speedup_with_vision']:.2f}x"
    return [r["method"], ratio, f"{r['tokens_kept']}/{r['video_tokens']}",
            f"{r['sequence_tokens']} ({r['lm_length']})",
            _seconds(x["vanilla_prefill_s"]), f"{r['measured']['prune_s']:.3g}",
            _seconds(x["pruned_prefill_s"]), _seconds(x["e2e_s"]), f"{x['speedup']:.2f}x",
            f"{100 * x['pruner_share']:.1f}%", _seconds(x["vision_s"]), with_vision,
            "no fit" if x["speedup_fit"] is None else f"{x['speedup_fit']:.2f}x"]


def goal_sentence(record: dict) -> str:
    """Whether TFS meets the goal at 50% on each prompt, and which methods do."""
    rule, clauses = record["goal_rule"], []
    for frames, per in record["goal"].items():
        tfs = per.get("tfs")
        others = [m for m, g in per.items() if g["met"] and m != "tfs"]
        head = (f"{frames} frames: TFS {tfs['speedup']:.2f}x with its pruner "
                f"{100 * tfs['pruner_share']:.1f}% of end to end, goal "
                f"**{'met' if tfs['met'] else 'not met'}**") if tfs else f"{frames} frames"
        clauses.append(head + (f"; met by {', '.join(others)}" if others else
                               "; met by no baseline"))
    return (f"Goal at {100 * rule['retain_ratio']:g}%: end-to-end speed-up at least "
            f"{rule['speedup']}x (the paper's Qwen2.5-VL-7B) with the pruner under "
            f"{100 * rule['pruner_share']:g}% of end to end (the paper's: "
            f"{record['paper']['prune_s']} of {record['paper']['e2e_s']} s). "
            + "; ".join(clauses) + ". " + fit_sentence(record) + " " + scale_sentence(record))


def fit_sentence(record: dict) -> str:
    """How far single layer timings sit from `layer_fit`, and TFS's speed-up read off it."""
    fit, rule = record["layer_fit"], record["goal_rule"]
    if fit is None:
        lengths = len({r["lm_length"] for r in record["rows"]})
        return (f"One layer's time against its length: no fit (`a n + b n^2` needs at least "
                f"{FIT_MIN_LENGTHS} padded lengths to be checked, this run has {lengths}).")
    worst = max(fit["residuals"].items(), key=lambda kv: abs(kv[1]))
    tfs = [f"{r['extrapolated']['speedup_fit']:.2f}x at {r['frames']} frames"
           for r in record["rows"] if r["method"] == "tfs"
           and r["retain_ratio"] == rule["retain_ratio"]]
    return (f"One layer's time against its length fits `a n + b n^2` within "
            f"{100 * abs(worst[1]):.0f}% (largest residual at n = {worst[0]}); with every layer "
            f"time read off that fit, TFS at {100 * rule['retain_ratio']:g}% speeds the prefill up "
            f"{' and '.join(tfs)}.")


def scale_sentence(record: dict) -> str:
    """How this machine's unpruned prefill compares with the paper's (a GPU): the pruner's
    share depends on it."""
    vanilla = {str(r["frames"]): r["extrapolated"]["vanilla_prefill_s"] for r in record["rows"]
               if r["method"] == "unpruned"}
    times = ", ".join(f"{v:.3g} s at {f} frames" for f, v in vanilla.items())
    return (f"The unpruned LM prefill takes {times} here, against the paper's "
            f"{record['paper']['vanilla_s']} s on a GPU: a pruner share measured on this "
            "machine is not the paper's.")


HEADER = ["method", "retain", "kept/video tokens", "prompt (padded)",
          f"vanilla prefill s {MARK}", "pruner s", f"pruned prefill s {MARK}",
          f"end to end s {MARK}", f"speed-up {MARK}", f"pruner share {MARK}",
          f"vision tower s {MARK}", f"speed-up with vision {MARK}",
          f"speed-up, layer fit {MARK}"]


def _intro(record: dict) -> str:
    lm, c = record["sizes"]["lm"], record["config"]
    return (f"Qwen2.5-VL stages from `tfs_jax.models` at {c['model']} widths (LM hidden "
            f"{lm['hidden']} x {lm['layers']} layers), float32, random weights, "
            f"{c['rounds']} interleaved rounds, medians. Inputs: {record['inputs']}. "
            f"{MARK} {EXTRAPOLATED} (vanilla prefill = "
            f"{record['extrapolation']['vanilla_prefill_s']}; the JSON's `extrapolation` has "
            "every formula); pruner times are measured whole.")


def _prompt_tables(record: dict, keep) -> list[str]:
    """Per prompt, a line and the table of its rows for which `keep(row)` holds."""


    out = []
    for frames, p in record["prompts"].items():
        rows = [r for r in record["rows"] if str(r["frames"]) == frames and keep(r)]
        out.append(f"{frames} frames at {record['config']['image_size']} px: "
                   f"{p['video_tokens']} video tokens, {p['sequence_tokens']} in the prompt.")
        out.append(md.table(HEADER, [_row_cells(r) for r in rows]))
    return out


def _missing(record: dict) -> list[str]:
    why = {}
    for part, reason in record["missing"].items():
        why.setdefault(reason, []).append(part)
    return [("Missing from `tfs_jax.models`, so not timed and not replaced (their columns "
             "say missing): " + "; ".join(f"{', '.join(parts)} ({reason})"
                                          for reason, parts in why.items()) + ".")] if why else []


def _components(record: dict) -> list[str]:


    counts, comp = record["counts"], []
    for name, s in record["components"].items():
        kind, part = name.split("/")[0], name.split("/")[-1]
        n = counts["vision"][part] if kind == "vision" else (
            counts["lm_layer"] if name.startswith("lm/layer") else 1)
        comp.append([name, n, md.spread(s, 4), len(s["runs"]), f"{s['compile_s']:.1f}"])
    return ["Timed components (seconds, median (min-max) of the runs; count: times the model "
            "runs it):", md.table(["component", "count", "seconds", "runs", "compile s"], comp)]


BLOCKS = ("table2",)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    """`({"table2": README text}, TABLES.md section)`: the README shows the unpruned rows
    and those at the goal's ratio; TABLES.md every row and every timed component."""


    goal = record["goal_rule"]["retain_ratio"]
    head = [md.provenance(record), _intro(record)]
    short = head + _prompt_tables(record, lambda r: r["retain_ratio"] in (1.0, goal))
    full = head + _prompt_tables(record, lambda r: True)
    tail = [goal_sentence(record)] + _missing(record)
    return ({"table2": "\n\n".join(short + tail)},
            "\n\n".join(full + tail + _components(record)))


def plot(record: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax_bar, ax_s = fig.subplots(1, 2)
    goal = record["goal_rule"]["retain_ratio"]
    labels, bottoms = [], []
    for frames in record["prompts"]:
        for r in record["rows"]:
            if str(r["frames"]) == frames and r["retain_ratio"] in (1.0, goal):
                x = r["extrapolated"]
                labels.append(f"{r['method']}\n{frames}f")
                bottoms.append((x["vision_s"] or 0.0, r["measured"]["prune_s"],
                                x["pruned_prefill_s"]))
    stack = list(zip(*bottoms))
    base = [0.0] * len(labels)
    for values, name, color in zip(stack, ("vision tower", "pruner", "LM prefill"),
                                   ("C7", "C3", "C0")):
        ax_bar.bar(labels, values, bottom=base, label=name, color=color)
        base = [b + v for b, v in zip(base, values)]
    ax_bar.set(ylabel="seconds (extrapolated; pruner measured)",
               title=f"unpruned and {100 * goal:g}% retained")
    ax_bar.tick_params(axis="x", labelsize=6)
    ax_bar.legend(fontsize=7)
    for i, frames in enumerate(record["prompts"]):
        for j, method in enumerate(dict.fromkeys(r["method"] for r in record["rows"])):
            rows = sorted((r for r in record["rows"] if str(r["frames"]) == frames
                           and r["method"] == method), key=lambda r: r["retain_ratio"])
            if method == "unpruned":
                continue
            ax_s.plot([100 * r["retain_ratio"] for r in rows],
                      [r["extrapolated"]["speedup"] for r in rows], "o-" if i else "s--",
                      color=f"C{j}", label=f"{method}, {frames} frames")
            if method == "tfs" and record["layer_fit"] is not None:
                ax_s.plot([100 * r["retain_ratio"] for r in rows],
                          [r["extrapolated"]["speedup_fit"] for r in rows], "x:",
                          color=f"C{j}", label=f"tfs, {frames} frames, layer fit")
    ax_s.axhline(record["paper"]["speedup"], color="k", ls=":", label="paper (TFS, 50%)")
    ax_s.set(xlabel="retained video tokens (%)", ylabel="speed-up (extrapolated)",
             title="LM prefill speed-up, pruner included")
    ax_s.legend(fontsize=6, ncol=2)
    m = record["machine"]
    fig.suptitle(f"Table 2 at {record['config']['model']} widths, extrapolated from timed "
                 f"components; {m['cpu_count']} CPU cores ({m['backend']})")
    return fig


def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
