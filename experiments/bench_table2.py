"""Paper Table 2 for Qwen2.5-VL-7B, LLaVA-OneVision-7B and InternVL3.5-8B on this machine:
LM prefill, pruner overhead, pruned prefill, end to end and speed-up, extrapolated from
components timed at each model's real widths.

    python -m experiments.bench_table2          # results/bench_table2.{json,png}
    python -m experiments.bench_table2 --smoke  # a toy of each family, one short prompt (CI)

A whole 7B model does not fit this machine's time (one LM layer over 8k tokens is about
4 TFLOP), so the benchmark times the stages and components of `tfs_jax.models` (the code
`Model.forward` runs) at each model's widths (`_table2_parts.CONFIGS`), float32, random
parameters, and multiplies each by its count in the model:

- the vision tower, part by part (`_table2_parts.vision_counts`): Qwen2.5-VL's patch
  embedding, one windowed block (x 28), one full-attention block (x 4) and the patch merger;
  LLaVA-OneVision's SigLIP patch embedding, one layer (x 26) and the projector with the 2x2
  bilinear pooling; InternVL's patch embedding, one InternViT block (x 24) and the pixel
  shuffle with the projector;
- the LM prefill over the prompt the family's `Model.prompt` builds (padded to its bucket of
  128): one decoder layer with chunked attention (x the LM's layers: 28, 28, 36), plus the
  rest of `Model.prefill` (the embedding lookup, the final norm, the last row's LM head),
  once;
- the pruner, `Model.prune_videos` (`serving.prune_video_embeds`: `tfs_prune` or
  `baselines.prune` on the grid the family prunes, and `serving.compact`), timed whole: not
  an extrapolation.

Prompts: Qwen2.5-VL: `frames` frames at 448 x 448 (temporal patch 2: `frames / 2 * 256`
merged tokens on a `(frames / 2, 16, 16)` grid); LLaVA-OneVision: frames at 384 x 384, each
a pooled 14 x 14 grid, and the video's `image_newline` (32 frames: 6,273 tokens, the newline
never pruned); InternVL: one 448-px tile a frame, 16 x 16 tokens each, inside its
`Frame{i}: <img>` ... `</img>` text (32 frames: 8,192). Around the video, `prefix_len` and
`suffix_len` text tokens (a chat template around one video and a short question). The
pruners see video-like tokens: a bundled clip's frames (one per pruned-grid frame) through
DINOv2-S/14, projected to the LM's width by a fixed random matrix. Each row's LM length is
that of the prompt its pruner leaves (the baselines keep exactly `K`; TFS may keep fewer),
and rows of one padded length share one timed layer.

Timing: per model, every component, every distinct LM length and every (method, ratio)
pruner is one job; `rounds` rounds run every job of that model once in a fresh random order
(jobs whose first run took under 5 s, most pruners among them, run in `pruner_rounds`
rounds); a cell is the median of its runs; compiles are excluded and reported. The models
run one after another, each one's parameters freed before the next's. The columns follow
the paper's (`B`: a padded LM length; `layers` the model's):

    vanilla prefill = layers x layer(B unpruned) + rest(B unpruned)        (extrapolated)
    pruned prefill  = layers x layer(B pruned) + rest(B pruned)            (extrapolated)
    end to end      = pruner + pruned prefill                              (extrapolated)
    speed-up        = vanilla prefill / end to end                         (extrapolated)
    pruner share    = pruner / end to end                                  (extrapolated)
    vision tower    = sum over the tower's parts of part x its count       (extrapolated)

The paper's end to end leaves the vision tower out; `speedup_with_vision` puts it back in
both numerator and denominator. Every extrapolated number sits under a row's
`extrapolated` key, measured ones under `measured`, and the table marks the former. The
record holds one section a model under `models`.
"""

from __future__ import annotations

import dataclasses
import gc
import sys

from experiments import harness
from experiments.lib import render as md

EXTRAPOLATED = "extrapolation: components timed once, multiplied by their counts in the model"
# Per family: the paper's Table 2 row (TFS at 50%, seconds on a GPU) and the goal at 50%:
# Qwen2.5-VL at least the paper's 1.7x; LLaVA-OneVision above 1.0x (the paper's pruner made
# it slower: 0.6x); InternVL3.5 above the paper's 1.3x. Every goal also wants the pruner
# under 5% of end to end ("pay almost nothing for the pruning").
PAPER = {
    "qwen2_5_vl": {"model": "Qwen2.5-VL (7B)", "speedup": 1.7, "prune_s": 0.46, "e2e_s": 1.22,
                   "vanilla_s": 2.11, "pruned_s": 0.76},
    "llava_onevision": {"model": "LLaVA-OneVision (7B)", "speedup": 0.6, "prune_s": 0.35,
                        "e2e_s": 0.66, "vanilla_s": 0.42, "pruned_s": 0.31},
    "internvl": {"model": "InternVL3.5 (8B)", "speedup": 1.3, "prune_s": 0.58, "e2e_s": 0.87,
                 "vanilla_s": 1.09, "pruned_s": 0.29},
}
GOALS = {
    "qwen2_5_vl": {"retain_ratio": 0.5, "speedup": 1.7, "strict": False, "pruner_share": 0.05,
                   "why": "the paper's"},
    "llava_onevision": {"retain_ratio": 0.5, "speedup": 1.0, "strict": True,
                        "pruner_share": 0.05, "why": "faster than no pruning"},
    "internvl": {"retain_ratio": 0.5, "speedup": 1.3, "strict": True, "pruner_share": 0.05,
                 "why": "the paper's"},
}
FIT_MIN_LENGTHS = 3  # `layer_fit` has 2 unknowns: a third length is the first it can miss


@dataclasses.dataclass(frozen=True)
class Config:
    # (a key of `_table2_parts.CONFIGS`, its prompts' frame counts)
    models: tuple = (("qwen2.5-vl-7b", (32, 64)),       # 4,096 and 8,192 video tokens
                     ("llava-onevision-7b", (32,)),     # 6,273 (with the newline)
                     ("internvl3.5-8b", (32,)))         # 8,192
    image_size: int = 448  # Qwen2.5-VL's frames; the other families take their tower's size
    prefix_len: int = 15  # system prompt, user turn, <|vision_start|>
    suffix_len: int = 14  # <|vision_end|>, a short question, the assistant's turn
    ratios: tuple = (0.5, 0.25, 0.1)
    methods: tuple = ("tfs", "uniform", "evs", "divprune", "vidcom2")
    clip: str = "bikes"
    fps: float = 2.0  # frames per second of the sampled video (second_per_grid_ts = 2 / fps)
    encoder: str = "dinov2"
    rounds: int = 2  # every job; each round of the full run takes about 4 minutes
    pruner_rounds: int = 5  # jobs whose first run took under 5 s (most pruners) run this many
    seed: int = 0


SMOKE = Config(models=(("tiny", (4,)), ("tiny-llava", (4,)), ("tiny-internvl", (4,))),
               ratios=(0.5, 0.25), methods=("tfs", "uniform", "divprune"), encoder="pixels",
               rounds=2, pruner_rounds=3)


def prompt_shape(cfg: Config, name: str, frames: int) -> dict:
    """The pruned grid, patch count and token counts of one prompt of model `name`."""
    from experiments._table2_parts import prompt_shape as shape

    return shape(name, frames, image_size=cfg.image_size, prefix_len=cfg.prefix_len,
                 suffix_len=cfg.suffix_len)


def family_of(name: str) -> str:
    from experiments._table2_parts import CONFIGS

    return CONFIGS[name]["model_type"]


# ----------------------------------------------------------------------------------------
# Measuring


def build_jobs(cfg: Config, name: str, frames: tuple) -> tuple[dict, dict, dict]:
    """Every job of model `name`; per (prompt, method, ratio) what its pruner kept and the
    LM length it leads to; and `{component: why}` for each one `tfs_jax.models` lacks."""
    from experiments import _table2_parts as parts

    full, model = parts.bench_model(name, cfg.seed)
    jobs, kept, prompts, missing = {}, {}, {}, {}
    for n in frames:
        shape = prompt_shape(cfg, name, n)
        pruners, pruned, padded = pruner_jobs(cfg, name, full, model, shape)
        jobs.update(pruners)
        kept.update(pruned)
        prompts = {**padded, **prompts}  # one prompt per padded length
        vision, absent = parts.vision_jobs(model, shape, cfg.seed)
        jobs.update({f"vision/{n}/{part}": job for part, job in vision.items()})
        missing.update({f"vision/{part}": why for part, why in absent.items()})
    for length, p in sorted(prompts.items()):
        for part, job in parts.lm_jobs(model, p).items():
            jobs[f"lm/{part}/{length}"] = job
    return jobs, kept, missing


def pruner_jobs(cfg: Config, name: str, full, model, shape: dict) -> tuple[dict, dict, dict]:
    """One prompt's pruner jobs; `{(frames, method, ratio): (kept, slots, L', B)}` with
    the unpruned prompt's too (`kept`: the video placeholders left in the prompt, the
    never-pruned newline among them); and `{B: Prompt}`, the prompts `Model.prompt` builds."""
    import jax.numpy as jnp

    from experiments import _table2_parts as parts

    frames, (t, grid, _) = shape["frames"], shape["merged_grid"]
    embeds = jnp.asarray(parts.video_tokens(cfg.clip, cfg.encoder, t, grid,
                                            full.text.hidden_size, cfg.seed))
    ids = parts.prompt_ids(name, full, shape, cfg.prefix_len, cfg.suffix_len)
    fixed = shape["video_tokens"] - shape["prunable_tokens"]
    jobs, kept, prompts = {}, {}, {}
    cases = [("unpruned", 1.0)] + [(m, r) for m in cfg.methods for r in cfg.ratios]
    for method, ratio in cases:
        out = None
        if method != "unpruned":
            job = f"prune/{frames}/{method}@{ratio:g}"
            jobs[job], out = parts.pruner_job(model, embeds, shape, method, ratio, cfg.seed)
            print(f"{name} {job}: {int(out.num_kept)} kept (first call, compile included: "
                  f"{jobs[job].compile_s:.1f} s)", file=sys.stderr, flush=True)
        p = parts.build_prompt(model, ids, embeds, shape, out, cfg.fps)
        prompts.setdefault(int(p.ids.shape[0]), p)
        video = shape["video_tokens"]
        k, slots = ((video, shape["prunable_tokens"]) if out is None else
                    (int(out.num_kept) + fixed, int(out.indices.shape[0])))
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


def counts_of(name: str) -> dict:
    """How many times model `name` runs each timed component."""
    from experiments import _table2_parts as parts

    full = parts.config_of(name)
    return {"vision": parts.vision_counts(full), "lm_layer": full.text.num_layers, "lm_rest": 1}


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


def assemble(cfg: Config, name: str, frames: tuple, jobs: dict, kept: dict,
             missing: dict) -> dict:
    """One model's section of the record: its components (spreads of the timed jobs), the
    layer fit, and the rows (medians, derived)."""
    from experiments._table2_parts import spread

    timed = {job: {**spread(j.runs_s), "compile_s": j.compile_s} for job, j in jobs.items()}
    med = {job: s["median"] for job, s in timed.items()}
    counts = counts_of(name)
    layers = counts["lm_layer"]
    fit = layer_fit({int(k.split("/")[-1]): v for k, v in med.items()
                     if k.startswith("lm/layer/")})

    def prefill(length):
        return prefill_seconds(med[f"lm/layer/{length}"], med[f"lm/rest/{length}"], layers)

    rows = []
    for n in frames:
        shape = prompt_shape(cfg, name, n)
        vision = vision_seconds({p: med.get(f"vision/{n}/{p}") for p in counts["vision"]},
                                counts["vision"])
        full = kept[(n, "unpruned", 1.0)][3]
        cases = [("unpruned", 1.0)] + [(m, r) for r in cfg.ratios for m in cfg.methods]
        for method, ratio in cases:
            k, slots, length, padded = kept[(n, method, ratio)]
            # only the unpruned row has no pruner; a pruned row's missing job is a bug
            prune_s = 0.0 if method == "unpruned" else med[f"prune/{n}/{method}@{ratio:g}"]
            x = extrapolate(prune_s, prefill(full), prefill(padded), vision)
            x["speedup_fit"] = None if fit is None else fitted_speedup(
                fit["fitted_s"], prune_s, (med[f"lm/rest/{full}"], med[f"lm/rest/{padded}"]),
                (full, padded), layers)
            rows.append({"frames": n, "method": method, "retain_ratio": ratio,
                         "video_tokens": shape["video_tokens"],
                         "prunable_tokens": shape["prunable_tokens"],
                         "tokens_kept": k, "video_slots": slots, "sequence_tokens": length,
                         "lm_length": padded, "measured": {"prune_s": prune_s},
                         "extrapolated": x})
    rule = GOALS[family_of(name)]
    return {"components": timed, "counts": counts, "layer_fit": fit, "rows": rows,
            "missing": missing, "goal_rule": rule, "goal": goal(rows, rule)}


def meets(speedup: float, pruner_share: float, rule: dict) -> bool:
    """Whether a row meets `rule` (speed-up at least, or above with `strict`, the rule's;
    the pruner's share of end to end under the rule's)."""
    fast = speedup > rule["speedup"] if rule["strict"] else speedup >= rule["speedup"]
    return bool(fast and pruner_share < rule["pruner_share"])


def goal(rows: list[dict], rule: dict) -> dict:
    """Per prompt, every method at the goal's ratio: speed-up, pruner share, and whether
    both meet the model's goal (`GOALS`)."""
    out = {}
    for r in rows:
        if r["retain_ratio"] != rule["retain_ratio"] or r["method"] == "unpruned":
            continue
        x = r["extrapolated"]
        out.setdefault(str(r["frames"]), {})[r["method"]] = {
            "speedup": x["speedup"], "pruner_share": x["pruner_share"],
            "met": meets(x["speedup"], x["pruner_share"], rule)}
    return out


def run_model(cfg: Config, name: str, frames: tuple) -> dict:
    """Build, time and assemble one model (its jobs interleaved among themselves), then let
    its parameters go before the next model's."""
    import jax

    from experiments import _table2_parts as parts

    print(f"== {name}", file=sys.stderr, flush=True)
    jobs, kept, missing = build_jobs(cfg, name, frames)
    parts.time_jobs(jobs, cfg.rounds, cfg.seed, cheap_rounds=cfg.pruner_rounds)
    section = {"family": family_of(name), "sizes": parts.sizes(name),
               "prompts": {str(n): prompt_shape(cfg, name, n) for n in frames},
               "paper": PAPER[family_of(name)],
               **assemble(cfg, name, frames, jobs, kept, missing)}
    del jobs
    gc.collect()
    jax.clear_caches()
    return section


def run(cfg: Config) -> dict:
    from experiments import _table2_parts as parts

    models = {name: run_model(cfg, name, tuple(frames)) for name, frames in cfg.models}
    return {
        "inputs": (f"pruners: {cfg.clip} clip, {cfg.encoder} tokens of one frame per "
                   "pruned-grid frame (a 16 x 16 grid, resized bilinearly to a smaller one), "
                   "projected to the LM's width by a fixed random Gaussian matrix; vision "
                   "tower and LM: random float32 parameters and inputs"),
        "frame_text": ("InternVL's Frame{i}: <img> ... </img> text, as token counts: "
                       f"{parts.FRAME_TEXT['after']} after each frame, "
                       f"{parts.FRAME_TEXT['between']} between frames and 4 + the digits of "
                       "i before; an estimate of the Qwen tokenizer's split"),
        "extrapolation": {
            "note": EXTRAPOLATED,
            "vanilla_prefill_s": "lm_layer(B) x layers + lm_rest(B), B the unpruned prompt's "
                                 "padded length",
            "pruned_prefill_s": "lm_layer(B) x layers + lm_rest(B), B the pruned prompt's "
                                "padded length",
            "e2e_s": "prune_s (measured whole) + pruned_prefill_s",
            "speedup": "vanilla_prefill_s / e2e_s",
            "pruner_share": "prune_s / e2e_s",
            "vision_s": "the sum over the tower's parts of part x its count (counts.vision)",
            "speedup_with_vision": "(vision_s + vanilla_prefill_s) / (vision_s + e2e_s)",
            "speedup_fit": "speedup with each layer time read off layer_fit (a n + b n^2, "
                           "least squares over every timed length) instead of its own timing; "
                           "None (no fit) with fewer than 3 lengths"},
        "models": models,
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


def goal_sentence(section: dict) -> str:
    """Whether TFS meets the model's goal on each prompt, and which methods do."""
    rule, paper, clauses = section["goal_rule"], section["paper"], []
    for frames, per in section["goal"].items():
        tfs = per.get("tfs")
        others = [m for m, g in per.items() if g["met"] and m != "tfs"]
        head = (f"{frames} frames: TFS {tfs['speedup']:.2f}x with its pruner "
                f"{100 * tfs['pruner_share']:.1f}% of end to end, goal "
                f"**{'met' if tfs['met'] else 'not met'}**") if tfs else f"{frames} frames"
        clauses.append(head + (f"; met by {', '.join(others)}" if others else
                               "; met by no baseline"))
    bound = "above" if rule["strict"] else "at least"
    return (f"Goal at {100 * rule['retain_ratio']:g}%: end-to-end speed-up {bound} "
            f"{rule['speedup']}x ({rule['why']}) with the pruner under "
            f"{100 * rule['pruner_share']:g}% of end to end; the paper's {paper['model']} row "
            f"for TFS: {paper['speedup']}x, its pruner {paper['prune_s']} of "
            f"{paper['e2e_s']} s end to end. "
            + "; ".join(clauses) + ". " + fit_sentence(section) + " " + scale_sentence(section))


def fit_sentence(section: dict) -> str:
    """How far single layer timings sit from `layer_fit`, and TFS's speed-up read off it."""
    fit, rule = section["layer_fit"], section["goal_rule"]
    if fit is None:
        lengths = len({r["lm_length"] for r in section["rows"]})
        return (f"One layer's time against its length: no fit (`a n + b n^2` needs at least "
                f"{FIT_MIN_LENGTHS} padded lengths to be checked, this run has {lengths}).")
    worst = max(fit["residuals"].items(), key=lambda kv: abs(kv[1]))
    tfs = [f"{r['extrapolated']['speedup_fit']:.2f}x at {r['frames']} frames"
           for r in section["rows"] if r["method"] == "tfs"
           and r["retain_ratio"] == rule["retain_ratio"]]
    return (f"One layer's time against its length fits `a n + b n^2` within "
            f"{100 * abs(worst[1]):.0f}% (largest residual at n = {worst[0]}); with every layer "
            f"time read off that fit, TFS at {100 * rule['retain_ratio']:g}% speeds the prefill up "
            f"{' and '.join(tfs)}.")


def scale_sentence(section: dict) -> str:
    """How this machine's unpruned prefill compares with the paper's (a GPU): the pruner's
    share depends on it."""
    vanilla = {str(r["frames"]): r["extrapolated"]["vanilla_prefill_s"]
               for r in section["rows"] if r["method"] == "unpruned"}
    times = ", ".join(f"{v:.3g} s at {f} frames" for f, v in vanilla.items())
    return (f"The unpruned LM prefill takes {times} here, against the paper's "
            f"{section['paper']['vanilla_s']} s on a GPU: a pruner share measured on this "
            "machine is not the paper's.")


HEADER = ["method", "retain", "kept/video tokens", "prompt (padded)",
          f"vanilla prefill s {MARK}", "pruner s", f"pruned prefill s {MARK}",
          f"end to end s {MARK}", f"speed-up {MARK}", f"pruner share {MARK}",
          f"vision tower s {MARK}", f"speed-up with vision {MARK}",
          f"speed-up, layer fit {MARK}"]


def _intro(record: dict) -> str:
    return (f"Each model's stages from `tfs_jax.models` at its real widths, float32, random "
            f"weights, {record['config']['rounds']} interleaved rounds of that model's jobs, "
            f"medians. Inputs: {record['inputs']}. {MARK} {EXTRAPOLATED} (vanilla prefill = "
            f"{record['extrapolation']['vanilla_prefill_s']}; the JSON's `extrapolation` has "
            "every formula); pruner times are measured whole.")


def _model_line(name: str, section: dict) -> str:
    lm, v = section["sizes"]["lm"], section["sizes"]["vision"]
    tower = " + ".join(f"{n} x {part}" for part, n in section["counts"]["vision"].items())
    return (f"**{name}** ({section['family']}): LM hidden {lm['hidden']} x {lm['layers']} "
            f"layers, {lm['heads']} heads ({lm['kv_heads']} kv) of {lm['head_dim']}, MLP "
            f"{lm['intermediate']}; vision tower hidden {v['hidden']}, timed as {tower}.")


def _prompt_tables(section: dict, keep) -> list[str]:
    """Per prompt, a line and the table of its rows for which `keep(row)` holds."""
    out = []
    for frames, p in section["prompts"].items():
        rows = [r for r in section["rows"] if str(r["frames"]) == frames and keep(r)]
        fixed = p["video_tokens"] - p["prunable_tokens"]
        never = f" ({fixed} never pruned: the newline)" if fixed else ""
        out.append(f"{frames} frames at {p['image_size']} px: {p['video_tokens']} video "
                   f"tokens{never}, {p['sequence_tokens']} in the prompt.")
        out.append(md.table(HEADER, [_row_cells(r) for r in rows]))
    return out


def _missing(section: dict) -> list[str]:
    why = {}
    for part, reason in section["missing"].items():
        why.setdefault(reason, []).append(part)
    return [("Missing from `tfs_jax.models`, so not timed and not replaced (their columns "
             "say missing): " + "; ".join(f"{', '.join(parts)} ({reason})"
                                          for reason, parts in why.items()) + ".")] if why else []


def _components(section: dict) -> list[str]:
    counts, comp = section["counts"], []
    for name, s in section["components"].items():
        kind, part = name.split("/")[0], name.split("/")[-1]
        n = counts["vision"][part] if kind == "vision" else (
            counts["lm_layer"] if name.startswith("lm/layer") else 1)
        comp.append([name, n, md.spread(s, 4), len(s["runs"]), f"{s['compile_s']:.1f}"])
    return ["Timed components (seconds, median (min-max) of the runs; count: times the model "
            "runs it):", md.table(["component", "count", "seconds", "runs", "compile s"], comp)]


BLOCKS = ("table2",)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    """`({"table2": README text}, TABLES.md section)`: per model, the README shows the
    unpruned rows and those at the goal's ratio; TABLES.md every row and every timed
    component."""
    short = [md.provenance(record), _intro(record)]
    full = list(short)
    for name, section in record["models"].items():
        ratio = section["goal_rule"]["retain_ratio"]
        head, tail = [_model_line(name, section)], [goal_sentence(section)] + _missing(section)
        short += head + _prompt_tables(section, lambda r: r["retain_ratio"] in (1.0, ratio)) + tail
        full += (head + _prompt_tables(section, lambda r: True) + tail
                 + _components(section))
    return {"table2": "\n\n".join(short)}, "\n\n".join(full)


def plot(record: dict):
    from matplotlib.figure import Figure

    models = record["models"]
    fig = Figure(figsize=(13, 4.2 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 2, squeeze=False)
    for (ax_bar, ax_s), (name, section) in zip(axes, models.items()):
        _plot_model(ax_bar, ax_s, name, section)
    m = record["machine"]
    fig.suptitle(f"Table 2 at each model's widths, extrapolated from timed components; "
                 f"{m['cpu_count']} CPU cores ({m['backend']})")
    return fig


def _plot_model(ax_bar, ax_s, name: str, section: dict) -> None:
    goal = section["goal_rule"]["retain_ratio"]
    labels, bottoms = [], []
    for frames in section["prompts"]:
        for r in section["rows"]:
            if str(r["frames"]) == frames and r["retain_ratio"] in (1.0, goal):
                x = r["extrapolated"]
                labels.append(f"{r['method']}\n{frames}f")
                bottoms.append((x["vision_s"] or 0.0, r["measured"]["prune_s"],
                                x["pruned_prefill_s"]))
    base = [0.0] * len(labels)
    for values, part, color in zip(zip(*bottoms), ("vision tower", "pruner", "LM prefill"),
                                   ("C7", "C3", "C0")):
        ax_bar.bar(labels, values, bottom=base, label=part, color=color)
        base = [b + v for b, v in zip(base, values)]
    ax_bar.set(ylabel="seconds (extrapolated; pruner measured)",
               title=f"{name}: unpruned and {100 * goal:g}% retained")
    ax_bar.tick_params(axis="x", labelsize=6)
    ax_bar.legend(fontsize=7)
    methods = list(dict.fromkeys(r["method"] for r in section["rows"]))
    for i, frames in enumerate(section["prompts"]):
        for j, method in enumerate(methods):
            if method == "unpruned":
                continue
            rows = sorted((r for r in section["rows"] if str(r["frames"]) == frames
                           and r["method"] == method), key=lambda r: r["retain_ratio"])
            ax_s.plot([100 * r["retain_ratio"] for r in rows],
                      [r["extrapolated"]["speedup"] for r in rows], "o-" if i else "s--",
                      color=f"C{j}", label=f"{method}, {frames} frames")
            if method == "tfs" and section["layer_fit"] is not None:
                ax_s.plot([100 * r["retain_ratio"] for r in rows],
                          [r["extrapolated"]["speedup_fit"] for r in rows], "x:",
                          color=f"C{j}", label=f"tfs, {frames} frames, layer fit")
    ax_s.axhline(section["paper"]["speedup"], color="k", ls=":",
                 label=f"paper's {section['paper']['model']} (TFS, 50%)")
    ax_s.set(xlabel="retained video tokens (%)", ylabel="speed-up (extrapolated)",
             title=f"{name}: LM prefill speed-up, pruner included")
    ax_s.legend(fontsize=6, ncol=2)


def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
