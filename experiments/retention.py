"""Retention: how much of a small video-QA model's accuracy survives pruning (Table 1 analogue).

    python -m experiments.retention          # full study (results/retention.{json,png})
    python -m experiments.retention --smoke  # tiny version for CI

The task, its model and training are `experiments/lib/qa_task.py`. The last `heldout_videos`
training videos are held out of training; one model per seed of `seeds` (its own
initialisation and batch order, same videos) trains on the others. Every method prunes the
test videos once per retain ratio (the pruners do not depend on the model); each model
answers the five questions of every test video with all tokens and with each method's kept
tokens, and those of every held-out video with all tokens.

Reported (statistics in `experiments/lib/metrics.py`):
- `chance_accuracy`: uniform guessing over each question's answers, averaged over the
  questions, and beside it the rate of always giving each question's most common training
  answer; both per question too.
- per method and ratio: accuracy, accuracy relative to all tokens, and the chance-normalised
  score `(acc - chance) / (full - chance)` over the questions the models learned
  (`learned_questions`: all-token accuracy's interval above chance on the held-out
  training videos, never the test set, so the choice of questions cannot favour the test
  scores; the others are left out of it), each beside the tokens actually kept; per
  question accuracy; per seed values; `vs_tfs`, the difference to default TFS at the same
  ratio.
- intervals: 95% two-level bootstrap over test videos and model seeds. A draw resamples
  the test videos, each with all five of its answers, and the seeds, and recomputes the
  mean over the drawn seeds; every method uses the same draws, so differences are paired.
  With few seeds the seed level is rough (S seeds resampled understate their spread by
  (S-1)/S); the per-seed values are in `per_seed`.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from experiments.lib import common as _common
from experiments import harness
from experiments.lib import render as md
from experiments.lib import metrics
from experiments.lib import qa_task


@dataclasses.dataclass(frozen=True)
class Config:
    data: qa_task.DataConfig = qa_task.DataConfig()
    model: qa_task.ModelConfig = qa_task.ModelConfig()
    seeds: tuple = (0, 1, 2)          # one trained model each
    heldout_videos: int = 120         # last training videos, kept out of training: they
                                      # decide which questions were learned
    prune_seed: int = 0               # keys of random pruners and k-means++ seeding
    ratios: tuple = _common.RATIOS
    methods: tuple = ()               # empty: TFS variants and every baseline
    bootstrap: int = 2000
    bootstrap_seed: int = 0


SMOKE = Config(
    data=qa_task.DataConfig(num_frames=4, cut_frames=(2,), train_videos=6, test_videos=4,
                            background_frames=8, clips=("carphone",), encoder="pixels"),
    model=qa_task.ModelConfig(width=16, heads=2, layers=1, steps=2, batch=4,
                              train_keep=(0.25,)),
    seeds=(0, 1), heldout_videos=2, ratios=(0.25,), methods=("tfs", "random"), bootstrap=50)


def split_training(data: dict, heldout: int) -> tuple[dict, dict]:
    """`(fit, held_out)`: the training videos without and with their last `heldout`."""
    n = data["tokens"].shape[0]
    if not 0 < heldout < n:
        raise ValueError(f"heldout_videos={heldout} must be in [1, {n - 1}] for {n} training videos")
    parts = ({}, {"encoder": data["encoder"]})
    for name in ("tokens", "answers", "cut"):
        parts[0][name], parts[1][name] = data[name][:n - heldout], data[name][n - heldout:]
    return {**data, **parts[0]}, parts[1]


def keep_masks(cfg: Config, tokens: np.ndarray) -> dict:
    """`{(method, ratio): (N, T, H, W) bool}` of every method on the test videos."""
    chosen = {k: m for k, m in _common.methods().items() if not cfg.methods or k in cfg.methods}
    masks = {}
    for name, method in chosen.items():
        for ratio in cfg.ratios:
            masks[name, ratio] = _common.keep_masks(name, method, tokens, ratio,
                                                    seed=cfg.prune_seed)[0]
            print(f"{name:>15} @ {ratio}: pruned", file=sys.stderr)
    return masks


def answers(cfg: Config, train_data: dict, heldout: dict, test_data: dict, masks: dict):
    """`(full (S, N, Q), held (S, M, Q), {(method, ratio): (S, N, Q)}, training logs)`:
    right answers of each seed's model (trained on `train_data`) with all tokens, on the
    held-out videos with all tokens, and with each keep mask."""
    from tfs_jax.budget import static_budget

    _, t, h, w, _ = test_data["tokens"].shape
    full, held, right, training = [], [], {key: [] for key in masks}, {}
    fingerprint = qa_task.tokens_fingerprint(train_data)  # one pass for every seed
    for seed in cfg.seeds:
        params, log = qa_task.trained_model(cfg.model, train_data, seed, fingerprint)
        full.append(qa_task.predict(cfg.model, params, test_data, None))
        held.append(qa_task.predict(cfg.model, params, heldout, None))
        train_right = qa_task.predict(cfg.model, params, train_data, None)
        training[str(seed)] = {**log, "train_accuracy_full_tokens": float(train_right.mean())}
        for (name, ratio), keep in masks.items():
            right[name, ratio].append(qa_task.predict(cfg.model, params, test_data, keep,
                                                      static_budget(t * h * w, ratio)))
        print(f"seed {seed}: all tokens {full[-1].mean():.3f}", file=sys.stderr)
    return (np.stack(full), np.stack(held), {k: np.stack(v) for k, v in right.items()},
            training)


def _scores(scores: dict, intervals: bool = True) -> dict:
    """Point values (and, if `intervals`, their 95% intervals) of `metrics.answer_scores`,
    JSON-ready."""
    out = {}
    for name in ("accuracy", "relative", "normalised"):
        if name in scores:
            value, samples = scores[name]
            out[name] = float(value)
            if intervals:
                out[f"{name}_ci95"] = metrics.interval(samples)
    out["per_question"] = dict(zip(qa_task.QUESTIONS, map(float, scores["per_question"])))
    return out


def summarise(cfg: Config, full: np.ndarray, right: dict, masks: dict, chance: np.ndarray,
              draws: tuple, learned: np.ndarray) -> tuple[dict, list[dict]]:
    """The all-token row and one row per method and ratio (pooled and per seed); `draws`
    is `(video draws, seed draws)`."""
    def scored(r, f=full):
        return metrics.answer_scores(r, f, chance, learned, *draws)

    def per_seed(r):
        return {str(s): _scores(metrics.answer_scores(r[i:i + 1], full[i:i + 1], chance,
                                                      learned, draws[0]), intervals=False)
                for i, s in enumerate(cfg.seeds)}

    n, t, h, w = next(iter(masks.values())).shape if masks else (full.shape[1], 0, 0, 0)
    full_row = {"tokens_kept_mean": float(t * h * w), **_scores(scored(full)),
                "per_seed": per_seed(full)}
    compare = "normalised" if learned.any() else "accuracy"
    rows, pooled = [], {key: scored(r) for key, r in right.items()}
    for (name, ratio), keep in masks.items():
        kept = keep.reshape(n, -1).sum(1)
        row = {"method": name, "retain_ratio": ratio, "tokens_kept_mean": float(kept.mean()),
               "tokens_kept_min": int(kept.min()), "tokens_kept_max": int(kept.max()),
               "kept_share_mean": float(kept.mean() / (t * h * w)),
               **_scores(pooled[name, ratio]), "per_seed": per_seed(right[name, ratio])}
        if name != "tfs" and ("tfs", ratio) in pooled:
            ours, base = pooled[name, ratio][compare], pooled["tfs", ratio][compare]
            row["vs_tfs"] = {"score": compare, "difference": float(ours[0] - base[0]),
                             "ci95": metrics.interval(ours[1] - base[1])}
        rows.append(row)
    return full_row, rows


def run(cfg: Config) -> dict:
    timer = _common.Timer()
    all_train, test_data = qa_task.dataset(cfg.data, "train"), qa_task.dataset(cfg.data, "test")
    train_data, heldout = split_training(all_train, cfg.heldout_videos)
    prepare_s = timer()
    masks = keep_masks(cfg, test_data["tokens"])
    full, held, right, training = answers(cfg, train_data, heldout, test_data, masks)
    sizes = [len(qa_task.ANSWERS[q]) for q in qa_task.QUESTIONS]
    chance = metrics.chance_accuracy(sizes)
    majority = metrics.majority_rate(train_data["answers"], test_data["answers"], sizes)
    seed_draws = metrics.bootstrap_seeds(len(cfg.seeds), cfg.bootstrap, cfg.bootstrap_seed)
    draws = (metrics.bootstrap_videos(full.shape[1], cfg.bootstrap, cfg.bootstrap_seed),
             seed_draws)
    held_draws = metrics.bootstrap_videos(held.shape[1], cfg.bootstrap, cfg.bootstrap_seed + 1)
    learned = metrics.learned_questions(held, held_draws, chance, seed_draws)
    held_lo = np.quantile(metrics.question_accuracy(held, held_draws, seed_draws), 0.025, axis=0)
    full_row, rows = summarise(cfg, full, right, masks, chance, draws, learned)
    questions = qa_task.QUESTIONS
    return {
        "encoder": test_data["encoder"],
        "seeds": list(cfg.seeds),
        "chance_accuracy": {
            "uniform": float(chance.mean()), "majority": float(majority.mean()),
            "per_question": {q: {"uniform": float(c), "majority": float(m)}
                             for q, c, m in zip(questions, chance, majority)}},
        "learned_questions": [q for q, ok in zip(questions, learned) if ok],
        "not_learned_questions": [q for q, ok in zip(questions, learned) if not ok],
        "learned_on": {
            "videos": (f"the last {held.shape[1]} of {all_train['tokens'].shape[0]} training "
                       "videos, kept out of training"),
            "rule": ("all-token accuracy's 95% interval (bootstrap over held-out videos and "
                     "model seeds) above chance; the test videos play no part"),
            "accuracy_per_question": dict(zip(questions, map(float, held.mean(axis=(0, 1))))),
            "ci95_low_per_question": dict(zip(questions, map(float, held_lo)))},
        "interval_resamples": ["test videos", "model seeds"],
        "statistics_note": (
            "pooled values are means over seeds; 95% intervals: two-level bootstrap of test "
            "videos (all answers of a video together) and model seeds (the same draws for "
            "every method); normalised = (acc - chance) / (full - chance) over "
            "learned_questions only, chosen on held-out training videos; vs_tfs: paired "
            "difference to default tfs at the same ratio"),
        "data": {"train_videos": int(train_data["tokens"].shape[0]),
                 "heldout_videos": int(held.shape[1]),
                 "test_videos": int(full.shape[1]), "questions": list(questions),
                 "answers": qa_task.ANSWERS, "tokens_per_video": full_row["tokens_kept_mean"],
                 "prepare_seconds": prepare_s},
        "training": training,
        "methods_note": ("tfs: default (coalescing drops static kept tokens after the budget: "
                         "spends less of it); tfs-refill: coalescing before the budget (spends "
                         "more of it); tfs-nocoalesce: spends all of it; the rest are "
                         "tfs_jax.baselines, each keeping exactly K_v tokens"),
        "full": full_row,
        "rows": rows,
    }


def plot(record: dict):
    from matplotlib.figure import Figure

    score = "normalised" if record["learned_questions"] else "accuracy"
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for name in dict.fromkeys(r["method"] for r in record["rows"]):
        rows = sorted((r for r in record["rows"] if r["method"] == name),
                      key=lambda r: r["retain_ratio"])
        value = np.array([r[score] for r in rows])
        lo, hi = (np.array([r[f"{score}_ci95"][i] for r in rows]) for i in (0, 1))
        style = "-o" if name.startswith("tfs") else "--s"
        ax1.errorbar([r["kept_share_mean"] for r in rows], value, yerr=[value - lo, hi - value],
                     fmt=style, capsize=3, label=name)
        ax2.plot([r["retain_ratio"] for r in rows], [r["relative"] for r in rows], style,
                 label=name)
    ax1.axhline(1.0, color="grey", lw=0.8)
    ax1.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax1.set(xlabel="tokens actually kept (share, mean)",
            ylabel={"normalised": "chance-normalised score (learned questions)",
                    "accuracy": "accuracy"}[score])
    chance = record["chance_accuracy"]["uniform"] / record["full"]["accuracy"]
    ax2.axhline(chance, color="grey", lw=0.8, ls=":", label="chance (relative)")
    ax2.set(xlabel="retain ratio (budget)", ylabel="accuracy relative to all tokens")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"Synthetic video QA, {record['encoder']} tokens, {len(record['seeds'])} "
                 "model seeds (95% intervals: bootstrap over test videos and seeds)")
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('retention',)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
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
    held = record["learned_on"]["accuracy_per_question"]  # what the learned rule read
    lost = [f"{q} ({held[q]:.3f} with all tokens on the held-out training videos against "
            f"chance {per_q[q]['uniform']:.3f})" for q in record["not_learned_questions"]]
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



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
