"""Tests for `experiments/`: the harness (the commit stamp, the refusal of a dirty tree, in a
temporary git repository; a tree without git; the source digest and `--stale`), each study's `--smoke` run through it (the JSON it writes, with
the keys the tables read and sensible numbers), and `experiments.tables` rendering every
smoke record. The statistics are in tests/test_metrics.py.

The smoke runs are called in-process and share one results folder, so that they share
compiled pruners (same clip, frame count and encoder) and the compilation cache of conftest.
"""

import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

# `experiments/` is a folder of modules at the repository root, not an installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

needs("matplotlib", why="the studies' plots")
needs("av", why="the studies decode the bundled clips")

from experiments import harness  # noqa: E402
from experiments.lib import provenance  # noqa: E402

needs_clips = pytest.mark.clips("carphone")  # tests/_needs.py
HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")


# ----------------------------------------------------------------------------------------
# The harness


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


def _study(name="fake"):
    """A study module as the harness sees one: Config, SMOKE, run, plot."""
    import dataclasses

    module = types.ModuleType(f"experiments.{name}", "A fake study.")

    @dataclasses.dataclass(frozen=True)
    class Config:
        size: int = 3

    def plot(record):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 2))
        fig.subplots().plot(record["values"])
        return fig

    module.Config, module.SMOKE, module.plot = Config, Config(size=2), plot
    module.run = lambda cfg: {"values": list(range(cfg.size))}
    return module


def _tree(root, monkeypatch):
    """A tiny source tree at `root` (a library module and the fake study's module) that the
    harness and the source digest take for the repository."""
    (root / "tfs_jax").mkdir()
    (root / "tfs_jax" / "core.py").write_text("x = 1\n")
    (root / "experiments").mkdir()
    (root / "experiments" / "fake.py").write_text('"""A fake study."""\n')
    (root / "results").mkdir()
    monkeypatch.setattr(harness, "REPO", root)
    monkeypatch.setattr(harness, "RESULTS", root / "results")
    monkeypatch.setattr(provenance, "REPO", root)
    return root


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A temporary git repository with one commit, standing in for the repository root."""
    _tree(tmp_path, monkeypatch)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "old.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def _record(folder, name="fake"):
    return json.loads((folder / f"{name}.json").read_text())


def test_commit_stamp_is_the_full_hash():
    state = harness.git_state()
    assert HEX40.fullmatch(state["commit"]) and state["dirty"] in (True, False)


def test_a_clean_tree_writes_results_stamped_with_its_commit(repo):
    assert harness.main(_study(), []) == 0
    record = _record(repo / "results")
    assert HEX40.fullmatch(record["machine"]["commit"]) and record["machine"]["dirty"] is False
    assert record["values"] == [0, 1, 2] and record["config"] == {"size": 3}
    assert record["harness"] == harness.VERSION and record["smoke"] is False
    assert record["command"] == "python -m experiments.fake"
    assert record["source_sha256"] == provenance.study_digest("fake")
    assert {"jax", "backend", "device", "load_average", "load_average_end"} <= set(
        record["machine"])
    assert (repo / "results" / "fake.png").stat().st_size > 500
    # Changes under results/ leave the tree clean.
    (repo / "results" / "old.json").write_text("[]\n")
    assert harness.git_state(repo)["dirty"] is False


@pytest.mark.parametrize("change", ["tracked", "untracked"])
def test_a_dirty_tree_is_refused_unless_allowed(repo, change, capsys):
    if change == "tracked":
        (repo / "code.py").write_text("x = 2\n")
    else:
        (repo / "new.py").write_text("y = 1\n")
    assert harness.git_state(repo)["dirty"] is True
    assert harness.main(_study(), []) == 2
    assert "refusing" in capsys.readouterr().err
    assert not (repo / "results" / "fake.json").exists()
    assert harness.main(_study(), ["--allow-dirty"]) == 0
    record = _record(repo / "results")
    assert record["allow_dirty"] is True and record["machine"]["dirty"] is True
    assert record["machine"]["changed"] == ["code.py" if change == "tracked" else "new.py"]


def test_a_tree_that_changes_during_the_run_is_refused(repo):
    study = _study()

    def run(cfg):
        (repo / "code.py").write_text("x = 4\n")  # someone edits the code meanwhile
        return {"values": [1]}

    study.run = run
    assert harness.main(study, []) == 2 and not (repo / "results" / "fake.json").exists()


def _checkpointing_study(repo, *, edit=False, fail=False):
    """A study that checkpoints once (as gpu_acceptance does after each group), then edits
    the code (`edit`) or raises (`fail`), then returns."""
    study = _study()
    seen = {}

    def run(cfg, *, checkpoint):
        checkpoint({"values": [0]})
        partial = repo / "results" / "fake.partial.json"
        seen["partial"] = json.loads(partial.read_text()) if partial.exists() else None
        if edit:
            (repo / "code.py").write_text("x = 4\n")
        if fail:
            raise RuntimeError("cut short")
        return {"values": [0, 1]}

    study.run = run
    study.run_options = lambda args, checkpoint: {"checkpoint": checkpoint}
    return study, seen


def test_checkpoints_go_beside_the_record_and_become_it_at_the_end(repo):
    study, seen = _checkpointing_study(repo)
    assert harness.main(study, []) == 0
    assert seen["partial"] is not None and seen["partial"]["values"] == [0]
    assert seen["partial"]["study"] == "fake"
    assert _record(repo / "results")["values"] == [0, 1]
    assert not (repo / "results" / "fake.partial.json").exists()


def test_a_refused_run_leaves_neither_record_nor_checkpoint(repo):
    (repo / "results" / "fake.json").write_text('{"values": "old"}\n')  # an earlier record
    study, seen = _checkpointing_study(repo, edit=True)
    assert harness.main(study, []) == 2
    assert _record(repo / "results") == {"values": "old"}  # untouched by the checkpoint
    assert seen["partial"] is not None and seen["partial"]["values"] == [0]
    assert not (repo / "results" / "fake.partial.json").exists()


def test_a_run_cut_short_leaves_its_checkpoint_and_the_old_record(repo):
    (repo / "results" / "fake.json").write_text('{"values": "old"}\n')
    study, _ = _checkpointing_study(repo, fail=True)
    with pytest.raises(RuntimeError, match="cut short"):
        harness.main(study, [])
    assert _record(repo / "results") == {"values": "old"}
    assert _record(repo / "results", "fake.partial")["values"] == [0]
    (repo / "tfs_jax" / "core.py").write_text("x = 2\n")  # the checkpoint's sources age
    assert harness.stale_records() == {}  # but a checkpoint is not a record


def test_a_tree_without_git_writes_its_digest_and_no_commit(tmp_path, monkeypatch):
    """A copy of the tree without .git (the GPU machine's) is not refused: the record names
    its sources by digest, with `commit: null`."""
    _tree(tmp_path, monkeypatch)
    assert harness.git_state(tmp_path) == {"commit": None, "dirty": None, "changed": []}
    assert harness.main(_study(), ["--results", str(tmp_path / "out")]) == 0
    record = _record(tmp_path / "out")
    assert record["machine"]["commit"] is None and record["machine"]["dirty"] is None
    assert HEX64.fullmatch(record["source_sha256"])
    assert record["source_sha256"] == provenance.source_digest(
        [tmp_path / "tfs_jax" / "core.py", tmp_path / "experiments" / "fake.py"])


def test_a_tree_without_git_whose_sources_change_during_the_run_is_refused(tmp_path,
                                                                            monkeypatch):
    _tree(tmp_path, monkeypatch)
    study = _study()

    def run(cfg):
        (tmp_path / "tfs_jax" / "core.py").write_text("x = 5\n")
        return {"values": [1]}

    study.run = run
    assert harness.main(study, ["--results", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "fake.json").exists()


def test_source_digest_by_hand(tmp_path, monkeypatch):
    """sha256 over (relative path, NUL, bytes, NUL) in path order; the order given and
    duplicates do not count, an edit or a renamed file does."""
    import hashlib

    monkeypatch.setattr(provenance, "REPO", tmp_path)
    (tmp_path / "b.py").write_bytes(b"2")
    (tmp_path / "a.py").write_bytes(b"1")
    want = hashlib.sha256(b"a.py\x001\x00b.py\x002\x00").hexdigest()
    files = [tmp_path / "b.py", tmp_path / "a.py"]
    assert provenance.source_digest(files) == want
    assert provenance.source_digest(files[::-1] + files) == want
    (tmp_path / "b.py").write_bytes(b"3")
    assert provenance.source_digest(files) != want


def test_stale_lists_a_study_after_a_library_edit_and_none_after_its_rerun(repo, capsys):
    assert harness.main(_study(), []) == 0
    assert harness.stale_records() == {} and harness.cli(["--stale"]) == 0
    (repo / "tfs_jax" / "core.py").write_text("x = 2\n")  # a library edit, committed
    _git(repo, "commit", "-q", "-am", "edit")
    assert list(harness.stale_records()) == ["fake"]
    capsys.readouterr()
    assert harness.cli(["--stale"]) == 1
    assert capsys.readouterr().out.startswith("fake: its sources changed since it ran")
    assert harness.main(_study(), []) == 0  # the rerun
    assert harness.stale_records() == {} and harness.cli(["--stale"]) == 0
    # The study's own module counts too; a record without a digest is stale.
    (repo / "experiments" / "fake.py").write_text('"""A fake study, edited."""\n')
    _git(repo, "commit", "-q", "-am", "edit the study")
    assert list(harness.stale_records()) == ["fake"]
    record = _record(repo / "results")
    del record["source_sha256"]
    assert "no source digest" in harness.stale_reason(record)


def test_a_copy_without_git_runs_a_real_study(tmp_path):
    """A copy of the package and experiments/ without .git runs a study's smoke through the
    harness (a fresh interpreter, as on the GPU machine) and records the same digest as
    this tree's, with `commit: null`."""
    root = pathlib.Path(harness.REPO)
    copy = tmp_path / "copy"
    for folder in ("tfs_jax", "experiments"):
        shutil.copytree(root / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    cache = os.environ.get("TFS_JAX_CACHE_DIR", str(root / ".jax_cache"))
    done = subprocess.run(
        [sys.executable, "-m", "experiments.bench_batch", "--smoke", "--results",
         str(tmp_path / "out")], cwd=copy, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(copy), "TFS_JAX_CACHE_DIR": cache,
             "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    record = _record(tmp_path / "out", "bench_batch")
    assert record["machine"]["commit"] is None
    assert record["source_sha256"] == provenance.study_digest("bench_batch")


def test_smoke_runs_are_allowed_dirty_but_never_into_results(repo, tmp_path):
    (repo / "code.py").write_text("x = 3\n")
    out = tmp_path / "smoke"
    assert harness.main(_study(), ["--smoke", "--results", str(out)]) == 0
    record = _record(out)
    assert record["smoke"] is True and record["machine"]["dirty"] is True
    assert record["config"] == {"size": 2}
    with pytest.raises(SystemExit):
        harness.main(_study(), ["--smoke", "--results", str(repo / "results")])


def test_plot_only_redraws_from_the_json(repo):
    assert harness.main(_study(), []) == 0
    png = repo / "results" / "fake.png"
    png.unlink()
    assert harness.main(_study(), ["--plot-only"]) == 0 and png.stat().st_size > 500


# ----------------------------------------------------------------------------------------
# Smoke runs of every study


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def smoke(folder, study):
    """`study`'s smoke record in `folder`, running it the first time."""
    if not (folder / f"{study}.json").exists():
        module = __import__(f"experiments.{study}", fromlist=["main"])
        assert module.main(["--smoke", "--results", str(folder)]) == 0
    assert (folder / f"{study}.png").stat().st_size > 1000
    record = json.loads((folder / f"{study}.json").read_text())
    assert record["study"] == study and record["smoke"] is True
    assert record["harness"] == harness.VERSION
    assert record["command"] == f"python -m experiments.{study} --smoke --results {folder}"
    machine = record["machine"]
    assert HEX40.fullmatch(machine["commit"]) and machine["dirty"] in (True, False)
    assert {"cpu", "cpu_count", "jax", "backend", "device", "load_average"} <= set(machine)
    assert record["source_sha256"] == provenance.study_digest(study)
    return record


@needs_clips
def test_real_clips_smoke(results):
    record = smoke(results, "real_clips")
    assert record["config"]["clips"] == ["carphone"]
    assert record["encoder"] == "pixel-patch-14"
    assert set(record["mean_over_clips"]) == {"tfs", "tfs-refill", "tfs-nocoalesce", "random"}
    full = record["per_clip"]["carphone"]["all_tokens"]
    assert full["tokens_kept"] == full["tokens_in"] == 4 * 256
    assert full["coverage_tfs"] == full["coverage_chunks"] == 1.0
    assert record["chunks"]["carphone"] == [0, 0, 1, 1]
    tfs, nocoalesce = (record["mean_over_clips"][m]["0.25"] for m in ("tfs", "tfs-nocoalesce"))
    assert nocoalesce["tokens_kept"] == 256  # no coalescing: the whole budget
    assert 0 < tfs["tokens_kept"] <= 256
    for row in (tfs, nocoalesce):
        assert 0 < row["coverage_tfs"] < 1 and 0 < row["coverage_chunks"] < 1
        if "saliency_mass" in row:
            assert 0 < row["saliency_mass"] < 1
    assert len(record["segments"]["carphone"]) == 4


@needs_clips
def test_ablations_smoke_sweeps_weights_in_one_compile(results):
    from experiments import ablations

    record = smoke(results, "ablations")
    sweep = record["factor_weights"]
    assert sweep["compile"]["traces"] == 1 and sweep["compile"]["jit_cache_entries"] == 1
    assert sweep["compile"]["reversed_batch_agrees"]
    assert set(ablations.NAMED_WEIGHTS) <= set(sweep["scores"])
    for row in sweep["scores"].values():
        assert {"tokens_kept", "coverage_tfs", "coverage_chunks"} <= set(row)
        assert 0 < row["tokens_kept"] <= 256
    # The (1, 1, 1) point of the vmapped sweep is the default config run on its own.
    default = record["static_variants"]["default (k=20, surround (1,2,2), coalesce)"]
    assert sweep["scores"]["M+R+F"] == pytest.approx(default)


@needs_clips
def test_retention_smoke(results):
    needs("skimage", why="the retention study's objects")
    needs("optax", why="training the retention study's QA model")
    record = smoke(results, "retention")
    assert record["data"]["test_videos"] == 4 and len(record["data"]["questions"]) == 5
    assert record["seeds"] == [0, 1] and set(record["training"]) == {"0", "1"}
    # Learned questions are chosen on held-out training videos, never the test set, and
    # the intervals resample seeds as well as videos.
    assert record["data"]["train_videos"] == 4 and record["data"]["heldout_videos"] == 2
    assert record["learned_on"]["videos"] == ("the last 2 of 6 training videos, kept out "
                                              "of training")
    assert set(record["learned_on"]["accuracy_per_question"]) == set(record["data"]["questions"])
    assert record["interval_resamples"] == ["test videos", "model seeds"]
    chance = record["chance_accuracy"]
    assert chance["uniform"] == pytest.approx(np.mean([1 / 6, 1 / 4, 1 / 3, 1 / 6, 1 / 4]),
                                              abs=1e-4)
    assert 0 <= chance["majority"] <= 1 and set(chance["per_question"]) == set(
        record["data"]["questions"])
    full = record["full"]
    assert full["relative"] == 1.0 and full["tokens_kept_mean"] == 4 * 256
    [tfs, rand] = record["rows"]
    assert (tfs["method"], rand["method"]) == ("tfs", "random")
    assert {"accuracy", "accuracy_ci95", "relative", "relative_ci95", "tokens_kept_mean",
            "per_question", "per_seed"} <= set(tfs)
    assert 0 < tfs["tokens_kept_mean"] <= 256 and set(tfs["per_seed"]) == {"0", "1"}
    lo, hi = tfs["accuracy_ci95"]
    assert 0 <= lo <= tfs["accuracy"] <= hi <= 1
    # The normalised score exists where some question was learned (two training steps
    # learn little), and the comparison with TFS uses it then.
    learned = bool(record["learned_questions"])
    assert ("normalised" in tfs) == ("normalised" in full) == learned
    score = rand["vs_tfs"]["score"]
    assert score == ("normalised" if learned else "accuracy")
    assert rand["vs_tfs"]["difference"] == pytest.approx(rand[score] - tfs[score], abs=1e-4)


def test_bench_overhead_smoke(results):
    record = smoke(results, "bench_overhead")
    assert [r["shape"] for r in record["rows"]] == [[4, 6, 7, 32]]
    for r in record["rows"]:
        assert r["min_ms"]["total"] <= r["total_ms"] <= r["max_ms"]["total"]
        assert r["ratio"] == pytest.approx(r["total_ms"] / r["read_ms"], rel=1e-3)
        assert set(r["median_ms"]) == set(record["stages"]) | {"total", "read"}
    assert record["slope_by_dim"] == {}  # one shape: no slope


def test_bench_batch_smoke(results):
    record = smoke(results, "bench_batch")
    assert {(r["function"], r["batch"]) for r in record["rows"]} == {("tfs_prune", 2),
                                                                      ("focal", 2)}
    for r in record["rows"]:
        assert r["per_video_ratio"] == pytest.approx(r["batch_ms"] / 2 / r["alone_ms"], rel=1e-3)


def test_bench_scale_smoke(results):
    record = smoke(results, "bench_scale")
    assert [p["shape"][0] for p in record["points"]] == [4, 8]
    assert record["big"]["within_limit"] and record["compilation"]["sweep_compilations"] == 1
    for p in record["points"]:
        assert p["min_s"] <= p["median_s"] <= p["max_s"]


def test_bench_prefill_smoke(results):
    record = smoke(results, "bench_prefill")
    rows = {(r["method"], r["retain_ratio"]): r for r in record["rows"]}
    methods = {"tfs", "tfs-bucketed", "uniform", "random", "evs", "divprune", "vidcom2",
               "fastv", "tfs+fastv"}
    assert set(rows) == {(m, 0.25) for m in methods}  # every method at the smoke's ratio
    for r in record["rows"]:
        assert len(r["e2e_s"]["runs"]) == 2 and r["e2e_s"]["min"] <= r["e2e_s"]["median"]
    tfs, bucketed = rows["tfs", 0.25], rows["tfs-bucketed", 0.25]
    assert tfs["slots"] == 36 and tfs["tokens_kept"] == bucketed["tokens_kept"]
    # The compacted decision: the smallest multiple of 8 that holds the kept tokens.
    assert bucketed["slots"] == -(-bucketed["tokens_kept"] // 8) * 8 < tfs["slots"]
    assert rows["fastv", 0.25]["slots"] == 144 and rows["fastv", 0.25]["tokens_kept"] == 36
    # One LM program per slot count without FastV; every row that ran it is listed.
    programs = record["programs"]
    assert programs["36"]["methods"] == [f"{m}@0.25" for m in (
        "tfs", "uniform", "random", "evs", "divprune", "vidcom2")]
    assert str(bucketed["slots"]) in programs and programs["144"]["methods"] == ["all tokens"]
    assert 0 < record["cost_model"]["attention_share_full"] < 1


@needs_clips
def test_tables_render_every_smoke_record(results):
    from experiments import tables

    for study in ("real_clips", "ablations", "retention", "bench_overhead", "bench_batch",
                  "bench_scale", "bench_prefill"):
        smoke(results, study)
    blocks, text = tables.render(results)
    assert set(blocks) == {"overhead", "scale", "batch", "prefill", "real_clips", "retention",
                           "ablations", "cli_kept", "table2"}
    assert "bench_table2.json` is missing" in blocks["table2"]  # its smoke: test_bench_table2.py
    assert "awaits" in blocks["cli_kept"]  # the smoke has no bikes clip
    for name, block in blocks.items():
        assert "Stale" not in block, name  # every smoke record has today's digest
        if name not in ("cli_kept", "table2"):
            assert "awaits" not in block and "current harness" not in block, name
    assert "tfs-bucketed" in blocks["prefill"] and "tokens^" in blocks["prefill"]
    assert "coverage (equal chunks)" in blocks["real_clips"]
    for study in ("bench_prefill", "retention", "real_clips", "ablations"):
        assert f"## results/{study}.json" in text
    # TABLES.md has every row: each prefill row, each ablation weight setting.
    record = json.loads((results / "bench_prefill.json").read_text())
    assert text.count("| tfs-bucketed |") == len(record["config"]["ratios"])
    assert text.count("| grid ") + 7 >= len(json.loads(
        (results / "ablations.json").read_text())["factor_weights"]["scores"])


@needs_clips
def test_tables_show_the_normalised_score_when_a_question_was_learned(results):
    """The smoke models learn nothing; mark one question learned (as a full run's models
    would) and the retention table and its reading switch to the normalised score."""
    import copy

    from experiments import retention

    record = copy.deepcopy(smoke(results, "retention"))
    record["learned_questions"], record["not_learned_questions"] = ["quadrant"], ["direction"]
    for i, row in enumerate([record["full"]] + record["rows"]):
        row["normalised"], row["normalised_ci95"] = 0.5 + i / 10, [0.2, 0.9]
        for seed in row["per_seed"].values():
            seed["normalised"] = 0.5
        if "vs_tfs" in row:
            row["vs_tfs"] = {"score": "normalised", "difference": 0.1, "ci95": [0.05, 0.2]}
    blocks, section = retention.table(record)
    text = blocks["retention"]
    assert "normalised (95% CI)" in text and "0.700 (0.20 to 0.90)" in text  # random's row
    assert "Never learned, so left out of the normalised score: direction" in text
    # the sentence quotes the accuracy the rule read (held-out training videos), not the test's
    held = record["learned_on"]["accuracy_per_question"]["direction"]
    assert f"direction ({held:.3f} with all tokens on the held-out training videos" in text
    assert "above it: random (+0.100 [+0.050, +0.200], 256 kept)" in text
    assert "| tfs | 25% |" in section and "seed 1: acc / norm" in section


# ----------------------------------------------------------------------------------------
# Study pieces


def test_tables_say_when_a_record_is_stale():
    """A record without a digest, or whose digest is not today's, gets a note; a current one
    none. The note heads a table, ends the inline batch sentence, and leaves the
    parenthetical `cli_kept` alone."""
    from experiments import tables

    record = {"study": "bench_batch"}
    note = tables.outdated(record, "bench_batch")
    assert note.startswith("*Stale: the record has no source digest")
    record["source_sha256"] = "0" * 64
    assert "its sources changed since it ran" in tables.outdated(record, "bench_batch")
    record["source_sha256"] = provenance.study_digest("bench_batch")
    assert tables.outdated(record, "bench_batch") is None
    assert tables.note_block("batch", "A.", note) == f"A. {note}"
    assert tables.note_block("overhead", "T", note) == f"{note}\n\nT"
    assert tables.note_block("cli_kept", "(x)", note) == "(x)"


def test_experiments_import_and_read_nothing_from_tests():
    """No module of experiments/ imports from tests/ or names a path there (the old
    `REPO / "tests" / "data"` would fail this); comments and docstrings may mention it."""
    for path in (pathlib.Path(harness.REPO) / "experiments").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "tests" for n in names), (path, names)
            text = node.value if isinstance(node, ast.Constant) else None
            assert not (isinstance(text, str) and (text == "tests" or text.startswith(
                ("tests/", "tests\\")))), (path, text)


def test_weight_sweep_has_named_points_then_the_grid():
    from experiments import ablations

    names, weights = ablations.weight_sweep(ablations.SMOKE)
    assert names[:7] == list(ablations.NAMED_WEIGHTS)
    assert len(names) == len(weights) == 7  # {0,1}^3 minus zero is exactly the named set
    full = ablations.weight_sweep(ablations.Config())[1]
    assert len(full) == 4**3 - 1 and not np.any(np.all(full == 0, axis=1))
    assert len({tuple(w) for w in full.tolist()}) == len(full)


def test_compare_says_where_a_method_wins_and_loses():
    from experiments.lib import render as _render

    data = {"ours": {0.5: (0.9, 100), 0.1: (0.5, 20)},
            "low": {0.5: (0.1, 200), 0.1: (0.1, 40)},     # beaten at every ratio
            "high": {0.5: (0.95, 200), 0.1: (0.6, 40)},   # better at every ratio
            "mixed": {0.5: (0.8, 200), 0.1: (0.7, 40)},   # worse at 50%, better at 10%
            "same": {0.5: (0.9001, 200), 0.1: (0.4999, 40)}}  # equal at 3 decimals
    text = _render.compare(data, "ours", ["low", "high", "mixed", "same"], higher=True,
                           show=_render.kept)
    assert text == (
        "beats low (at 10%: 0.500 [20 kept] against 0.100 [40 kept]) at every ratio; "
        "loses to high (at 10%: 0.500 [20 kept] against 0.600 [40 kept]) at every ratio; "
        "ties same at every ratio; against mixed: beats it at 50% (at 50%: 0.900 [100 kept] "
        "against 0.800 [200 kept]) and loses at 10% (at 10%: 0.500 [20 kept] against 0.700 "
        "[40 kept])")
    # Lower is better (times): the verdicts flip.
    assert _render.compare(data, "ours", ["low"], higher=False,
                           show=lambda v, _: f"{v:.1f} s").startswith("loses to low")


def test_overhead_slope_by_hand():
    from experiments.bench_overhead import slopes

    rows = [{"dim": 8, "tokens": n, "total_ms": t} for n, t in ((10, 2.0), (1000, 200.0))]
    rows += [{"dim": 16, "tokens": n, "total_ms": t} for n, t in ((10, 1.0), (1000, 100.0))]
    rows.append({"dim": 32, "tokens": 10, "total_ms": 1.0})  # one point: no slope
    assert slopes(rows) == pytest.approx({"8": 1.0, "16": 1.0})


def test_loglog_slope_by_hand():
    from experiments.lib.metrics import loglog_slope

    assert loglog_slope([10, 100, 1000], [3.0, 30.0, 300.0]) == pytest.approx(1.0)
    assert loglog_slope([2, 4, 8], [1.0, 4.0, 16.0]) == pytest.approx(2.0)


def test_fixed_slot_methods_are_tfs_and_every_baseline_rule():
    from experiments import bench_prefill
    from tfs_jax import baselines

    assert bench_prefill.FIXED_SLOTS == ("tfs", *baselines.RULES)


def test_tables_import_without_jax():
    # tables imports the studies (their `table`s) only when it renders.
    code = "import sys, experiments.tables; assert 'jax' not in sys.modules, 'jax loaded'"
    subprocess.run([sys.executable, "-c", code], cwd=harness.REPO, check=True)


def test_lm_flops_by_hand():
    from experiments.bench_prefill import lm_flops
    from tfs_jax.vlm import VLMConfig

    lm = VLMConfig.tiny(num_layers=2, vision_dim=16)  # hidden 64, kv 2 x 16, MLP 128
    flops = lm_flops(lm, 10, 4)
    linear = 2 * 10 * (64 * (64 + 2 * 32) + 64 * 64 + 3 * 64 * 128)
    attention = 4 * 10 ** 2 * 64
    assert flops["per_layer_linear"] == linear and flops["per_layer_attention"] == attention
    assert flops["total"] == 2 * (linear + attention) + 2 * 4 * (16 * 64 + 64 * 64)


@needs_clips
def test_qa_dataset_grows_from_its_cache(tmp_path, monkeypatch):
    needs("skimage", why="the retention study's objects")
    import dataclasses

    from experiments import retention
    from experiments.lib import qa_task

    monkeypatch.setenv("TFS_JAX_EXPERIMENT_CACHE", str(tmp_path))
    small = dataclasses.replace(retention.SMOKE.data, test_videos=2)
    first = qa_task.dataset(small, "test")
    assert first["tokens"].shape == (2, 4, 16, 16, 588) and first["encoder"] == "pixel-patch-14"
    # Scene 2 (from the cut on) is a still: its frames' tokens are one frame's, repeated.
    np.testing.assert_array_equal(first["tokens"][:, 2], first["tokens"][:, 3])
    grown = qa_task.dataset(dataclasses.replace(small, test_videos=3), "test")
    np.testing.assert_array_equal(grown["tokens"][:2], first["tokens"])
    np.testing.assert_array_equal(grown["answers"][:2], first["answers"])
    assert sorted(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("retention-*")) == [
        "n2.npz", "n3.npz"]
    assert np.all((grown["answers"] >= 0) & (grown["answers"] < [6, 4, 3, 6, 4]))
