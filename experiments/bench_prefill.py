"""LM prefill time: all video tokens against pruned by TFS and each baseline (paper Table 2 layout).

    python -m experiments.bench_prefill          # results/bench_prefill.{json,png}
    python -m experiments.bench_prefill --smoke  # toy sizes (CI)

A synthetic video of `frames x height x width` tokens with `vision_dim` features (a pan over
a wide scene, a moving object, a scene cut, noise) goes through each pruner and a
Qwen2-0.5B-shaped LM (`tfs_jax.vlm`, cut to `num_layers` of its layers: the full depth takes
minutes per prefill on a small CPU), with `prefix_len` text tokens before the video and
`suffix_len` after. Every method runs at every ratio of `ratios`:

- `tfs` and every baseline of `tfs_jax.baselines.RULES`: a `Decision` of
  `K = static_budget(T*H*W, ratio)` slots. Padding slots are masked, not removed, so all of
  these run the same LM program at one ratio: their prefill times differ by load noise
  only, and what sets them apart is the pruner's own time and the tokens kept.
- `tfs-bucketed`: TFS's decision cut by `tfs_jax.serving.compact` to the smallest bucket
  (multiples of `bucket_step`, then `K`) that holds its kept tokens: the LM runs on fewer
  slots, one compiled program per bucket. Its prune time includes the compaction.
- `fastv`: FastV inside the LM (after layer `fastv_layer`) keeps `ratio` of the video slots.
- `tfs+fastv`: the paper's cascade: TFS at `min(1, 2 * ratio)`, then FastV keeps `ratio`.

Timing: `rounds` interleaved rounds. Each round runs the unpruned prefill once and every
(method, ratio) once (pruner, then LM), in a fresh random order, so that load drift on a
shared machine spreads over all of them. Per row: median, minimum and maximum of `prune_s`,
`prefill_s` and `e2e_s = prune_s + prefill_s`; the first call (compiles) is excluded and
reported as `compile_s` (with the persistent compilation cache on). `speedup` = median
unpruned prefill / median `e2e_s`.

`programs`: each LM program without FastV (one per slot count), the rows that ran it, all
their prefill runs pooled, its sequence length and modelled flops. `cost_model`: the flops
of the LM's dense attention (`4 n^2 d` per layer, masked, not skipped) against the
projections and MLP (linear in `n`), and `time_exponent`, the log-log slope of the measured
time of those programs against their sequence length `n`.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys

import numpy as np

from experiments import harness
from experiments.lib import render as md
from experiments.lib import metrics
from experiments.lib.common import timed

# `("tfs", *tfs_jax.baselines.RULES)`, spelt out so that importing this module (as
# experiments/tables.py does) does not load jax; tests/test_experiments.py checks the two agree.
FIXED_SLOTS = ("tfs", "uniform", "random", "evs", "divprune", "vidcom2")


@dataclasses.dataclass(frozen=True)
class Config:
    frames: int = 16
    height: int = 16
    width: int = 16
    vision_dim: int = 1536  # 4,096 video tokens
    prefix_len: int = 16
    suffix_len: int = 48
    lm: str = "qwen2_0_5b"  # a `tfs_jax.vlm.VLMConfig` constructor
    num_layers: int = 4
    ratios: tuple = (0.5, 0.35, 0.25, 0.1)
    methods: tuple = FIXED_SLOTS + ("tfs-bucketed", "fastv", "tfs+fastv")
    bucket_step: int = 128
    fastv_layer: int = 1  # FastV prunes after this layer (the shallowest, in a 4-layer LM)
    rounds: int = 3
    seed: int = 0


SMOKE = Config(frames=4, height=6, width=6, vision_dim=32, prefix_len=4, suffix_len=8,
               lm="tiny", num_layers=2, ratios=(0.25,), bucket_step=8, rounds=2)


def synthetic_video(cfg: Config) -> np.ndarray:
    """`(T, H, W, D)` float32 features: a pan over a wide scene, a 4x4 object moving
    diagonally, a cut to a new scene half-way, and a little noise."""
    rng = np.random.default_rng(cfg.seed)
    t, h, w, d = cfg.frames, cfg.height, cfg.width, cfg.vision_dim
    scenes = rng.standard_normal((2, h, w + t, d)).astype(np.float32)
    thing = rng.standard_normal((4, 4, d)).astype(np.float32) * 2
    video = np.empty((t, h, w, d), np.float32)
    for i in range(t):  # building test data, not traced code
        video[i] = scenes[int(i >= t // 2), :, i // 2: i // 2 + w]
        y, x = (i % max(h - 4, 1)), (2 * i) % max(w - 4, 1)
        video[i, y:y + 4, x:x + 4] = thing
    return video + 0.1 * rng.standard_normal(video.shape).astype(np.float32)


def tfs_ratio(method: str, ratio: float) -> float:
    """The ratio TFS runs at: the cascade halves twice (TFS, then FastV)."""
    return min(1.0, 2 * ratio) if method == "tfs+fastv" else ratio


def pruner(method: str, ratio: float, cfg: Config):
    """`tokens -> Decision` of `method` (None for FastV, which prunes inside the LM)."""
    import jax

    import tfs_jax
    from tfs_jax import baselines
    from tfs_jax import serving
    from tfs_jax.budget import static_budget

    if method == "fastv":
        return None
    if method.startswith("tfs"):
        config = tfs_jax.TFSConfig(retain_ratio=tfs_ratio(method, ratio))
        prune = jax.jit(lambda v: tfs_jax.tfs_prune(v, config))
    else:
        prune = jax.jit(lambda v: baselines.prune(method, v, ratio))
    if method != "tfs-bucketed":
        return prune
    slots = static_budget(cfg.frames * cfg.height * cfg.width, ratio)
    buckets = serving.bucket_sizes(slots, cfg.bucket_step)
    return lambda v: serving.compact(prune(v), buckets)


def fastv_config(method: str, ratio: float, cfg: Config):
    from tfs_jax import vlm

    if method == "fastv":
        return vlm.FastVConfig(layer=cfg.fastv_layer, retain_ratio=ratio)
    if method == "tfs+fastv":
        return vlm.FastVConfig(layer=cfg.fastv_layer, retain_ratio=ratio / tfs_ratio(method, ratio))
    return None


def lm_flops(lm, length: int, video_slots: int) -> dict:
    """Modelled flops of one prefill of `length` slots (multiply-adds count 2).

    Per layer: q, k, v, o projections and the SwiGLU MLP, linear in `length`; dense
    attention (scores and weighted sum), `4 * length^2 * hidden`. Plus the projector on the
    video slots. Norms, RoPE and softmax are left out.
    """
    d, f, kv = lm.hidden_size, lm.intermediate_size, lm.num_kv_heads * lm.head_dim
    linear = 2 * length * (d * (d + 2 * kv) + d * d + 3 * d * f)
    attention = 4 * length ** 2 * d
    hidden = lm.vision_dim * d + (d * d if lm.projector == "mlp" else 0)
    total = lm.num_layers * (linear + attention) + 2 * video_slots * hidden
    return {"total": total, "per_layer_linear": linear, "per_layer_attention": attention,
            "attention_share": lm.num_layers * attention / total}


def spread(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs),
            "runs": list(runs)}


def measure(cfg: Config) -> tuple[list[dict], dict, object]:
    """Compile every (method, ratio), then `rounds` interleaved rounds of all of them and
    of the unpruned prefill. Returns rows (runs still raw), the full prefill and the LM."""
    import jax
    import jax.numpy as jnp

    from tfs_jax import vlm

    lm = getattr(vlm.VLMConfig, cfg.lm)(num_layers=cfg.num_layers, vision_dim=cfg.vision_dim)
    params = vlm.init_params(lm, jax.random.key(cfg.seed))
    tokens = jnp.asarray(synthetic_video(cfg))
    prefix = jnp.arange(cfg.prefix_len, dtype=jnp.int32) + 100
    suffix = jnp.arange(cfg.suffix_len, dtype=jnp.int32) + 200

    def prefill(result, fastv):
        return vlm.prefill(params, tokens, prefix, suffix, config=lm, result=result,
                           fastv=fastv, logits="last")

    def once(row):
        result, p = timed(row["prune"], tokens) if row["prune"] else (None, 0.0)
        out, f = timed(prefill, result, row["fastv"])
        return result, out, p, f

    rows = [{"method": m, "retain_ratio": r, "prune": pruner(m, r, cfg),
             "fastv": fastv_config(m, r, cfg), "prune_s": [], "prefill_s": []}
            for r in cfg.ratios for m in cfg.methods]
    _, full_compile = timed(prefill, None, None)
    for row in rows:
        result, out, p, f = once(row)
        row["compile_s"] = p + f
        row["tokens_kept"] = int(np.sum(out.video_slot_valid)) if row["fastv"] else int(
            result.num_kept)
        row["slots"] = int(result.indices.shape[0]) if result is not None else int(
            np.prod(tokens.shape[:3]))
        print(f"compiled {row['method']} @ {row['retain_ratio']}", file=sys.stderr, flush=True)
    full, order = [], np.random.default_rng(cfg.seed)
    for i in range(cfg.rounds):
        full.append(timed(prefill, None, None)[1])
        for j in order.permutation(len(rows)):
            _, _, p, f = once(rows[j])
            rows[j]["prune_s"].append(p)
            rows[j]["prefill_s"].append(f)
        print(f"round {i + 1}/{cfg.rounds}: unpruned {full[-1]:.2f} s", file=sys.stderr,
              flush=True)
    return rows, {"runs_s": full, "compile_s": full_compile}, lm


def programs(rows: list[dict], full: dict, lm, cfg: Config) -> dict:
    """`{slots: program}` of every LM program without FastV, with its pooled runs."""
    text = cfg.prefix_len + cfg.suffix_len
    video = cfg.frames * cfg.height * cfg.width
    out = {str(video): {"slots": video, "methods": ["all tokens"], "runs_s": full["runs_s"]}}
    for row in rows:
        if row["fastv"] is None:
            entry = out.setdefault(str(row["slots"]), {"slots": row["slots"], "methods": [],
                                                       "runs_s": []})
            entry["methods"].append(f"{row['method']}@{row['retain_ratio']:g}")
            entry["runs_s"] += row["prefill_s"]
    for entry in out.values():
        entry["sequence_length"] = entry["slots"] + text
        entry["prefill_s"] = spread(entry.pop("runs_s"))
        entry["flops"] = lm_flops(lm, entry["sequence_length"], entry["slots"])
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["slots"]))


def run(cfg: Config) -> dict:
    from tfs_jax import vlm

    raw, full, lm = measure(cfg)
    full_s = statistics.median(full["runs_s"])
    rows = []
    for row in raw:
        e2e = [p + f for p, f in zip(row["prune_s"], row["prefill_s"])]
        rows.append({
            "method": row["method"], "retain_ratio": row["retain_ratio"],
            "tokens_kept": row["tokens_kept"], "slots": row["slots"],
            "fastv": None if row["fastv"] is None else dataclasses.asdict(row["fastv"]),
            "prune_s": spread(row["prune_s"]), "prefill_s": spread(row["prefill_s"]),
            "e2e_s": spread(e2e), "compile_s": row["compile_s"],
            "speedup": full_s / statistics.median(e2e),
        })
    progs = programs(raw, full, lm, cfg)
    lengths = [p["sequence_length"] for p in progs.values()]
    times = [p["prefill_s"]["median"] for p in progs.values()]
    exponent = metrics.loglog_slope(lengths, times) if len(progs) > 1 else None
    video = cfg.frames * cfg.height * cfg.width
    return {
        "lm": {**dataclasses.asdict(lm),
               "full_depth_layers": getattr(vlm.VLMConfig, cfg.lm)().num_layers},
        "video_tokens": video,
        "sequence_tokens_full": video + cfg.prefix_len + cfg.suffix_len,
        "full_prefill": {**spread(full["runs_s"]), "compile_s": full["compile_s"]},
        "rows": rows,
        "programs": progs,
        "cost_model": {
            "time_exponent": exponent,
            "fitted_on": "median prefill time of each LM program without FastV against its "
                         "sequence length, log-log",
            "attention_share_full": progs[str(video)]["flops"]["attention_share"],
            "flops_note": " ".join(lm_flops.__doc__.split("\n\n")[1].split()),
        },
    }


def plot(record: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.5), layout="constrained")
    ax_t, ax_p, ax_s = fig.subplots(1, 3)
    for method in dict.fromkeys(r["method"] for r in record["rows"]):
        rows = sorted((r for r in record["rows"] if r["method"] == method),
                      key=lambda r: r["retain_ratio"])
        x = [100 * r["retain_ratio"] for r in rows]
        e2e = np.array([[r["e2e_s"][k] for k in ("median", "min", "max")] for r in rows])
        ax_t.errorbar(x, e2e[:, 0], yerr=[e2e[:, 0] - e2e[:, 1], e2e[:, 2] - e2e[:, 0]],
                      fmt="o-", capsize=2, label=method)
        ax_p.plot(x, [r["prune_s"]["median"] for r in rows], "o-", label=method)
        ax_s.plot(x, [r["speedup"] for r in rows], "o-", label=method)
    ax_t.axhline(record["full_prefill"]["median"], color="k", ls="--", label="all tokens")
    ax_t.set(xlabel="retained video tokens (%)", ylabel="prune + prefill (s; median, min-max)",
             yscale="log", title="End to end")
    ax_p.set(xlabel="retained video tokens (%)", ylabel="prune s (median)", yscale="log",
             title="The pruner alone")
    ax_s.axhline(1.0, color="k", ls="--")
    ax_s.set(xlabel="retained video tokens (%)", ylabel="speed-up vs all tokens",
             title="End-to-end speed-up")
    ax_s.legend(fontsize=7)
    lm, machine = record["lm"], record["machine"]
    fig.suptitle(f"{record['video_tokens']} video tokens, LM hidden {lm['hidden_size']} x "
                 f"{lm['num_layers']} of {lm['full_depth_layers']} layers, "
                 f"{machine['cpu_count']} CPU cores ({machine['backend']})")
    return fig


# ----------------------------------------------------------------------------------------
# Tables (assembled by experiments/tables.py)

BLOCKS = ('prefill',)  # README.md's blocks that `table` fills


LM_NAMES = {"qwen2_0_5b": "Qwen2-0.5B", "tiny": "toy"}


def _by_ratio(rows, key, extra=None) -> dict:
    """`{method: {ratio: (row[key], row[extra])}}` of a list of rows."""
    out = {}
    for r in rows:
        value = key(r) if callable(key) else r[key]
        out.setdefault(r["method"], {})[r["retain_ratio"]] = (value, r.get(extra))
    return out


def table(record: dict) -> tuple[dict, str]:
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



def main(argv=None) -> int:
    return harness.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
