"""Tests for `experiments/bench_table2.py`: the table's arithmetic by hand, the timing loop's
round counts, and the smoke record's numbers (every extrapolated column recomputed from the
timed components it names; the baselines' exact budgets; one rendered row per record row).
"""

import json
import pathlib
import sys
import time

import numpy as np

import pytest
from _needs import needs, needs_clips  # noqa: E402  (tests/_needs.py: the one skip rule)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

needs("matplotlib", why="the plot")
needs("av", why="the bikes clip")

from experiments import _table2_parts as parts  # noqa: E402
from experiments import bench_table2 as bench  # noqa: E402


def test_extrapolation_by_hand():
    # pruner 0.1 s, vanilla 2.0 s, pruned 0.9 s, vision 3.0 s
    x = bench.extrapolate(0.1, 2.0, 0.9, 3.0)
    assert x["e2e_s"] == pytest.approx(1.0)
    assert x["speedup"] == pytest.approx(2.0)
    assert x["pruner_share"] == pytest.approx(0.1)
    assert x["speedup_with_vision"] == pytest.approx(5.0 / 4.0)
    assert bench.extrapolate(0.1, 2.0, 0.9, None)["speedup_with_vision"] is None
    assert bench.prefill_seconds(0.5, 0.1, 28) == pytest.approx(14.1)
    counts = {"patch_embed": 1, "window_block": 28, "full_block": 4, "merger": 1}
    parts_s = {"patch_embed": 0.5, "window_block": 1.0, "full_block": 2.0, "merger": 0.25}
    assert bench.vision_seconds(parts_s, counts) == pytest.approx(0.5 + 28 + 8 + 0.25)
    assert bench.vision_seconds({**parts_s, "merger": None}, counts) is None


def test_layer_fit_by_hand():
    # times exactly 0.01 n + 1e-5 n^2: the fit recovers a and b, residuals 0
    times = {n: 0.01 * n + 1e-5 * n * n for n in (100, 200, 400, 800, 1600)}
    fit = bench.layer_fit(times)
    assert fit["a"] == pytest.approx(0.01) and fit["b"] == pytest.approx(1e-5)
    assert all(abs(v) < 1e-9 for v in fit["residuals"].values())
    # full 400 tokens (t = 5.6), pruned 200 (t = 2.4); 2 layers, rest 0.1 each, pruner 0.2
    assert fit["fitted_s"]["400"] == pytest.approx(5.6)
    assert bench.fitted_speedup(fit["fitted_s"], 0.2, (0.1, 0.1), (400, 200), 2) == pytest.approx(
        (2 * 5.6 + 0.1) / (0.2 + 2 * 2.4 + 0.1))
    doubled = bench.layer_fit({**times, 400: 2 * times[400]})
    worst = max(doubled["residuals"], key=lambda n: abs(doubled["residuals"][n]))
    assert worst == "400" and doubled["residuals"]["400"] > 0.5  # a slow run stands out


def test_layer_fit_needs_three_lengths():
    # two unknowns through two points fit exactly: residuals 0 would check nothing
    times = {n: 0.01 * n + 1e-5 * n * n for n in (100, 200, 400)}
    assert bench.layer_fit({100: times[100]}) is None
    assert bench.layer_fit({100: times[100], 200: 3 * times[200]}) is None
    assert bench.layer_fit(times)["b"] == pytest.approx(1e-5)


def _two_length_case(with_pruner=True):
    """`assemble`'s inputs for the tiny Qwen's 4-frame prompt: unpruned (padded 640) and TFS
    at 50% (padded 384), so two LM lengths; every job's median known."""
    cfg = bench.Config(models=(("tiny", (4,)),), ratios=(0.5,), methods=("tfs",))
    seconds = {"lm/layer/640": 0.3, "lm/rest/640": 0.1, "lm/layer/384": 0.2,
               "lm/rest/384": 0.05, "prune/4/tfs@0.5": 0.04}
    if not with_pruner:
        del seconds["prune/4/tfs@0.5"]
    jobs = {name: parts.Job(None, (), compile_s=0.0, runs_s=[s]) for name, s in seconds.items()}
    kept = {(4, "unpruned", 1.0): (512, 512, 541, 640), (4, "tfs", 0.5): (256, 256, 285, 384)}
    return cfg, jobs, kept


def test_assemble_with_two_lengths_says_no_fit():
    cfg, jobs, kept = _two_length_case()
    out = bench.assemble(cfg, "tiny", (4,), jobs, kept, {})
    assert out["layer_fit"] is None
    tfs = next(r for r in out["rows"] if r["method"] == "tfs")
    assert tfs["measured"]["prune_s"] == 0.04  # by hand: 3 x 0.3 + 0.1 over 0.04 + 3 x 0.2 + 0.05
    assert tfs["extrapolated"]["speedup"] == pytest.approx(1.0 / 0.69)
    assert all(r["extrapolated"]["speedup_fit"] is None for r in out["rows"])
    assert bench._row_cells(tfs)[-1] == "no fit"
    sentence = bench.fit_sentence(out)
    assert "no fit" in sentence and "has 2" in sentence and "within" not in sentence


def test_assemble_refuses_a_missing_pruner_job():
    # a pruned row without its timed pruner is a bug, not a free pruner (0 s)
    cfg, jobs, kept = _two_length_case(with_pruner=False)
    with pytest.raises(KeyError, match="prune/4/tfs@0.5"):
        bench.assemble(cfg, "tiny", (4,), jobs, kept, {})


def test_each_models_counts_and_prompt_shapes_by_hand():
    cfg = bench.Config()
    assert [name for name, _ in cfg.models] == ["qwen2.5-vl-7b", "llava-onevision-7b",
                                                "internvl3.5-8b"]
    # Qwen2.5-VL-7B: 32 vision blocks, 4 of them full attention; 28 LM layers
    counts = bench.counts_of("qwen2.5-vl-7b")
    assert counts["vision"] == {"patch_embed": 1, "window_block": 28, "full_block": 4,
                                "merger": 1}
    assert counts["lm_layer"] == 28 and counts["lm_rest"] == 1
    p32, p64 = (bench.prompt_shape(cfg, "qwen2.5-vl-7b", f) for f in (32, 64))
    assert p32["video_tokens"] == p32["prunable_tokens"] == 4096 and p64["video_tokens"] == 8192
    assert p64["grid_thw"] == [32, 32, 32] and p64["patches"] == 32 * 32 * 32
    assert p64["sequence_tokens"] == 8192 + 29 and p32["text_tokens"] == 29
    with pytest.raises(ValueError, match="frames=33"):
        bench.prompt_shape(cfg, "qwen2.5-vl-7b", 33)
    # LLaVA-OneVision-7B: 384 px / 14 = 27 patches a side, pooled to 14; 26 SigLIP layers;
    # the newline after the frames: 32 * 196 + 1 = 6,273 tokens, 6,272 prunable
    counts = bench.counts_of("llava-onevision-7b")
    assert counts["vision"] == {"patch_embed": 1, "layer": 26, "projector_pool": 1}
    assert counts["lm_layer"] == 28
    p = bench.prompt_shape(cfg, "llava-onevision-7b", 32)
    assert (p["video_tokens"], p["prunable_tokens"]) == (6273, 6272)
    assert p["merged_grid"] == [32, 14, 14] and p["patches"] == 32 * 27 * 27
    assert p["image_size"] == 384 and p["sequence_tokens"] == 6273 + 29
    # InternVL3.5-8B: 448 px / 14 = 32, pixel-shuffled to 16 x 16 = 256 a frame; 24 blocks;
    # 36 Qwen3 layers; frame text: "Frame{i}: <img>" is 4 + digits(i) tokens (9 x 5 + 23 x 6
    # = 183), "</img>" 32, newlines between frames 31: 246
    counts = bench.counts_of("internvl3.5-8b")
    assert counts["vision"] == {"patch_embed": 1, "block": 24, "shuffle_projector": 1}
    assert counts["lm_layer"] == 36
    p = bench.prompt_shape(cfg, "internvl3.5-8b", 32)
    assert p["video_tokens"] == p["prunable_tokens"] == 8192
    assert p["merged_grid"] == [32, 16, 16] and p["text_tokens"] == 29 + 246
    lm = parts.sizes("internvl3.5-8b")["lm"]
    assert (lm["hidden"], lm["heads"], lm["kv_heads"], lm["head_dim"], lm["intermediate"]) == (
        4096, 32, 8, 128, 12288)


def test_prompt_ids_lay_out_each_familys_placeholders():
    cfg = bench.Config()
    for name in ("tiny", "tiny-llava"):
        config = parts.config_of(name)
        shape = bench.prompt_shape(cfg, name, 4)
        ids = parts.prompt_ids(name, config, shape, 15, 14)
        video = ids == config.video_token_id
        assert video.sum() == shape["video_tokens"] and len(ids) == shape["sequence_tokens"]
        assert video[15:-14].all() and not video[:15].any() and not video[-14:].any()
    config = parts.config_of("tiny-internvl")
    shape = bench.prompt_shape(cfg, "tiny-internvl", 4)
    ids = parts.prompt_ids("tiny-internvl", config, shape, 15, 14)
    assert len(ids) == shape["sequence_tokens"]
    # 4 runs of 64 placeholders; between runs "</img>", "\n", "Frame{i+1}: <img>" (1 + 1 + 5)
    edges = np.flatnonzero(np.diff(np.r_[0, ids == config.image_token_id, 0]))
    starts, ends = edges[0::2], edges[1::2]
    assert list(ends - starts) == [64] * 4
    assert starts[0] == 15 + 5 and list(starts[1:] - ends[:-1]) == [7, 7, 7]
    assert len(ids) - ends[-1] == 1 + 14


def test_goal_rule_strict_and_at_least():
    at_least, above = bench.GOALS["qwen2_5_vl"], bench.GOALS["llava_onevision"]
    assert bench.meets(1.7, 0.01, at_least) and not bench.meets(1.69, 0.01, at_least)
    assert not bench.meets(1.0, 0.01, above) and bench.meets(1.01, 0.01, above)
    assert not bench.meets(3.0, 0.05, above)  # the pruner's share must stay under 5%


def test_time_jobs_interleaves_rounds_and_gives_cheap_jobs_more():
    calls = []

    def fn(name, seconds):
        calls.append(name)
        time.sleep(seconds)
        return 0

    jobs = {"slow": parts.Job(fn, ("slow", 0.05), compile_s=0.0),
            "fast": parts.Job(fn, ("fast", 0.0), compile_s=0.0)}
    parts.time_jobs(jobs, 2, 0, cheap_s=0.02, cheap_rounds=4)
    assert len(jobs["slow"].runs_s) == 2 and len(jobs["fast"].runs_s) == 4
    assert min(jobs["slow"].runs_s) >= 0.05 > max(jobs["fast"].runs_s)
    assert sorted(calls[:2]) == ["fast", "slow"]  # every job once before any runs twice


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    needs_clips("bikes")  # the smoke's pruners read its frames
    folder = tmp_path_factory.mktemp("table2")
    assert bench.main(["--smoke", "--results", str(folder)]) == 0
    assert (folder / "bench_table2.png").stat().st_size > 1000
    return json.loads((folder / "bench_table2.json").read_text())


def _sections(record):
    """Every model's section, each beside its frame counts from the record's config."""
    frames = {name: f for name, f in record["config"]["models"]}
    assert list(record["models"]) == list(frames)  # one section a model, in order
    return [(name, s, frames[name]) for name, s in record["models"].items()]


def test_smoke_record_arithmetic(record):
    from tfs_jax.budget import static_budget

    cfg = record["config"]
    rel = pytest.approx  # the JSON keeps 5 significant digits
    assert {s["family"] for _, s, _ in _sections(record)} == {"qwen2_5_vl", "llava_onevision",
                                                             "internvl"}
    for name, section, frames in _sections(record):
        comp, rows = section["components"], section["rows"]
        layers = section["counts"]["lm_layer"]
        assert len(rows) == len(frames) * (1 + len(cfg["methods"]) * len(cfg["ratios"]))
        for r in rows:
            x, p = r["extrapolated"], r["measured"]["prune_s"]
            prompt = section["prompts"][str(r["frames"])]
            n, full = r["lm_length"], -(-prompt["sequence_tokens"] // 128) * 128
            layer, rest = (comp[f"lm/{k}/{n}"]["median"] for k in ("layer", "rest"))
            assert x["pruned_prefill_s"] == rel(layers * layer + rest, rel=1e-4)
            assert x["vanilla_prefill_s"] == rel(
                layers * comp[f"lm/layer/{full}"]["median"] + comp[f"lm/rest/{full}"]["median"],
                rel=1e-4)
            assert x["e2e_s"] == rel(p + x["pruned_prefill_s"], rel=1e-4)
            assert x["speedup"] == rel(x["vanilla_prefill_s"] / x["e2e_s"], rel=1e-4)
            assert x["pruner_share"] == rel(p / x["e2e_s"], rel=1e-4)
            fit = section["layer_fit"]
            t = [fit["fitted_s"][str(k)] for k in (full, r["lm_length"])]
            assert x["speedup_fit"] == rel(
                (layers * t[0] + comp[f"lm/rest/{full}"]["median"])
                / (p + layers * t[1] + comp[f"lm/rest/{r['lm_length']}"]["median"]), rel=1e-4)
            # Model.prompt drops the pruned placeholders and pads to a multiple of 128
            assert r["sequence_tokens"] == r["tokens_kept"] + prompt["text_tokens"]
            assert r["lm_length"] == -(-r["sequence_tokens"] // 128) * 128
            fixed = r["video_tokens"] - r["prunable_tokens"]  # LLaVA's newline: 1
            assert fixed == (1 if section["family"] == "llava_onevision" else 0)
            if r["method"] == "unpruned":
                assert p == 0 and x["speedup"] == 1 and r["tokens_kept"] == r["video_tokens"]
                continue
            assert p == comp[f"prune/{r['frames']}/{r['method']}@{r['retain_ratio']:g}"]["median"]
            budget = static_budget(r["prunable_tokens"], r["retain_ratio"])
            if r["method"] == "tfs":
                assert r["tokens_kept"] - fixed <= r["video_slots"] <= budget
            else:  # the baselines keep exactly K, and share one LM length
                assert r["tokens_kept"] - fixed == r["video_slots"] == budget


def test_smoke_record_vision_is_timed_or_reported_missing(record):
    for name, section, _ in _sections(record):
        counts = section["counts"]["vision"]
        assert set(counts) == set(parts.VISION_PARTS[section["family"]])
        for r in section["rows"]:
            timed = {p: section["components"].get(f"vision/{r['frames']}/{p}") for p in counts}
            if all(timed.values()):
                want = sum(counts[p] * timed[p]["median"] for p in counts)
                assert r["extrapolated"]["vision_s"] == pytest.approx(want, rel=1e-4)
            else:
                assert r["extrapolated"]["vision_s"] is None
                assert all(f"vision/{p}" in section["missing"] for p, t in timed.items() if not t)


def test_smoke_record_layer_fit(record):
    for name, section, _ in _sections(record):
        fit, comp = section["layer_fit"], section["components"]
        for n, f in fit["fitted_s"].items():
            n = int(n)
            scale = abs(fit["a"] * n) + abs(fit["b"] * n * n)  # a and b may nearly cancel
            assert f == pytest.approx(fit["a"] * n + fit["b"] * n * n, abs=1e-4 * scale)
            assert fit["residuals"][str(n)] == pytest.approx(
                comp[f"lm/layer/{n}"]["median"] / f - 1, rel=1e-3, abs=1e-4)


def test_smoke_record_goal_and_table(record):
    for name, section, _ in _sections(record):
        rule = section["goal_rule"]
        assert rule == bench.GOALS[section["family"]]
        for r in section["rows"]:
            if r["retain_ratio"] == rule["retain_ratio"] and r["method"] != "unpruned":
                g = section["goal"][str(r["frames"])][r["method"]]
                x = r["extrapolated"]
                fast = (x["speedup"] > rule["speedup"] if rule["strict"]
                        else x["speedup"] >= rule["speedup"])
                assert g["met"] == (fast and x["pruner_share"] < rule["pruner_share"])
    blocks, text = bench.table(record)
    assert set(blocks) == set(bench.BLOCKS)
    short = blocks["table2"]  # the README: unpruned rows and those at the goal's ratio
    assert "| 25% |" not in short and "| tfs | 50% |" in short and "| tfs | 25% |" in text
    body = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    methods = [line.split(" | ")[0][2:] for line in body]
    sections = _sections(record)
    prompts = sum(len(s["prompts"]) for _, s, _ in sections)
    rows = sum(len(s["rows"]) for _, s, _ in sections)
    assert methods.count("unpruned") == prompts  # every row of the JSON, once
    assert sum(m in record["config"]["methods"] for m in methods) == rows - prompts
    assert "†" in text and "extrapolation" in text
    for name, section, _ in sections:
        assert f"**{name}**" in short and f"**{name}**" in text
        first = next(r for r in section["rows"] if r["method"] == "tfs")
        assert f"{first['extrapolated']['speedup']:.2f}x" in text
        assert section["paper"]["model"] in short
