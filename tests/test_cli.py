"""Tests for `tfs_jax/cli.py`, the run it starts (`tfs_jax/app.py`), its guards
(`tfs_jax/preflight.py`) and the figure it draws (`tfs_jax/figures.py`).

The end-to-end runs use 4 frames and the weight-free pixel-patch encoder: what is under
test is the command line, not DINOv2. Runs on the same clip share one token shape, so one
compile; the synthetic clips (tests/_clips.py) use a small token budget per frame.
"""

import errno
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

needs("av", why="the CLI decodes videos")
needs("matplotlib", why="the CLI draws its figure")

from tfs_jax import app  # noqa: E402
from tfs_jax import cli  # noqa: E402
from tfs_jax import figures  # noqa: E402
from tfs_jax import preflight  # noqa: E402
from tfs_jax import video  # noqa: E402

import _clips  # noqa: E402  (tests/_clips.py: synthetic clips of any frame size)

import _damaged  # noqa: E402  (tests/_damaged.py: broken copies of a bundled clip)

TINY = ["--frames", "4", "--encoder", "pixels", "--columns", "2", "--quiet"]
SUMMARY_KEYS = {"video", "encoder", "encoder_note", "frames", "source_frames", "frames_decoded",
                "frames_expected", "decode_error", "source_size", "frame_size",
                "max_frame_tokens", "grid", "token_dim", "tokens_in",
                "budget", "tokens_kept", "kept_share", "segments", "segment_of_frame",
                "config", "seconds", "files"}
STAGES = {"decode", "encode", "prune_compile", "prune_run", "figure", "total"}

needs_clips = pytest.mark.clips()  # any bundled clip (tests/_needs.py)


def _leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@needs_clips
def test_demo_writes_figure_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), *TINY]) == 0
    assert _leftovers(tmp_path) == ["demo"]  # no temporary folder left beside it
    assert _leftovers(out) == ["figure.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert set(summary["seconds"]) == STAGES
    assert all(v >= 0 for v in summary["seconds"].values())
    assert summary["seconds"]["total"] == pytest.approx(
        sum(v for k, v in summary["seconds"].items() if k != "total"), abs=0.01)
    assert summary["video"].endswith("bikes.mp4")
    assert summary["source_frames"] == [31, 93, 156, 218]  # centres of 4 stretches of 250
    assert (summary["frames_decoded"], summary["frames_expected"]) == (250, 250)
    assert summary["decode_error"] is None
    assert summary["encoder"] == "pixel-patch-14"
    # 640 x 272, no crop: sqrt(256 * 272 / 640) = 10.4 rows, sqrt(256 * 640 / 272) = 24.5
    # columns of 14-px patches within the 256-token budget.
    assert (summary["source_size"], summary["frame_size"]) == ([272, 640], [140, 336])
    assert (summary["frames"], summary["grid"], summary["token_dim"]) == (4, [10, 24], 588)
    assert summary["max_frame_tokens"] == 256
    assert summary["tokens_in"] == 4 * 10 * 24
    assert summary["budget"] == 240  # 25% of 960, algorithm §7
    assert 1 <= summary["tokens_kept"] <= summary["budget"]
    assert summary["kept_share"] == pytest.approx(summary["tokens_kept"] / 960)
    seg = summary["segment_of_frame"]
    assert len(seg) == 4 and seg[0] == 0 and summary["segments"] == max(seg) + 1
    assert all(0 <= b - a <= 1 for a, b in zip(seg, seg[1:]))
    assert summary["config"]["factor_weights"] == [1.0, 1.0, 1.0]
    printed = capsys.readouterr()
    assert f"tokens_kept: {summary['tokens_kept']}" in printed.out
    assert "encoder pixel-patch-14" in printed.err
    image = _read_png(out / "figure.png")
    assert image.shape[0] > 500 and image.shape[1] > 500  # six rows of two wide frames
    assert image[..., :3].std() > 0.05  # not a blank canvas


def _read_png(path):
    from matplotlib import image

    return image.imread(path)


@needs_clips
def test_prune_writes_npz_consistent_with_the_video(tmp_path, capsys):
    from tfs_jax import encoders

    clips = video.bundled_clips()
    clip = clips.get("carphone", next(iter(clips.values())))
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")  # an existing folder keeps its other files
    # Ratio and k as in the demo test (static: one compile for both); weights are traced.
    argv = ["prune", str(clip), "--ratio", "0.25", "--clusters", "20", "--weights", "1,0,1",
            "--out", str(out), *TINY]
    assert cli.main(argv) == 0
    assert _leftovers(out) == ["figure.png", "keep.txt", "kept.npz", "summary.json"]
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"tfs-jax: wrote figure.png, kept.npz, summary.json to {out} (an existing folder: "
        "files of the same names replaced, others kept)")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"] == {"retain_ratio": 0.25, "num_clusters": 20,
                                 "factor_weights": [1.0, 0.0, 1.0], "coalesce": True,
                                 "refill": False}
    with np.load(out / "kept.npz") as z:
        npz = {k: z[k] for k in z.files}
    n = summary["tokens_kept"]
    gh, gw = summary["grid"]
    assert (gh, gw) == (14, 17)  # 176 x 144, whole: sqrt(256 * 144 / 176), sqrt(256 * 176 / 144)
    assert npz["indices"].shape == (n,) and npz["positions"].shape == (n, 3)
    assert np.all(np.diff(npz["indices"]) > 0)
    t, h, w = npz["positions"].T
    np.testing.assert_array_equal((t * gh + h) * gw + w, npz["indices"])
    assert npz["keep_mask"].shape == (4, gh, gw) and npz["keep_mask"].sum() == n
    assert npz["keep_mask"][t, h, w].all()
    assert npz["saliency"].shape == (4, gh, gw, 3)
    np.testing.assert_array_equal(npz["kept_saliency"], npz["saliency"][t, h, w])
    assert npz["motion"].shape == (4, gh, gw, 2) and npz["cluster"].shape == (4, gh, gw)
    assert npz["cluster"].min() >= 0 and npz["cluster"].max() < 20
    # The kept tokens are the encoder's tokens of the same whole frames at those positions.
    frames = video.read_video(clip, 4, resize=video.fit_pixel_budget, progress=False).frames
    assert frames.shape == (4, 14 * gh, 14 * gw, 3)
    tokens = np.asarray(encoders.PixelPatchEncoder()(frames))
    np.testing.assert_allclose(npz["tokens"], tokens[t, h, w], rtol=1e-6, atol=1e-6)
    assert n <= 4 * gh * gw // 4  # 25% of the tokens


BAD = {
    "ratio zero": (["--ratio", "0"], "retain_ratio"),
    "ratio above one": (["--ratio", "1.5"], "retain_ratio"),
    "ratio not a number": (["--ratio", "half"], "--ratio"),
    "ratio nan": (["--ratio", "nan"], "retain_ratio"),
    "two weights": (["--weights", "1,1"], "factor_weights"),
    "negative weight": (["--weights", "-1,1,1"], "factor_weights"),
    "zero weights": (["--weights", "0,0,0"], "factor_weights"),
    "weights not numbers": (["--weights", "a,b,c"], "--weights"),
    "clusters zero": (["--clusters", "0"], "num_clusters"),
    "clusters fraction": (["--clusters", "2.5"], "--clusters"),
    "frame tokens zero": (["--max-frame-tokens", "0"], "--max-frame-tokens"),
    "frames zero": (["--frames", "0"], "--frames"),
}


def _prune_argv(clip, out, extra):
    base = {"--ratio": "0.25", "--frames": "4"}
    flags = dict(zip(extra[::2], extra[1::2]))
    base.update(flags)
    argv = ["prune", str(clip), "--out", str(out), "--encoder", "pixels", "--quiet"]
    for k, v in base.items():
        argv.append(f"{k}={v}")  # "=" so that values like -1,1,1 are not read as flags
    return argv


@needs_clips
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exits_2_with_one_line(case, tmp_path, capsys):
    extra, mentions = BAD[case]
    out = tmp_path / "out"
    assert cli.main(_prune_argv(video.default_clip(), out, extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tfs-jax: error: ")
    assert mentions in err and "Traceback" not in err
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [None, b"", b"this is not a video\n" * 50])
def test_unreadable_video_exits_2_and_writes_nothing(content, tmp_path, capsys):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert cli.main(_prune_argv(path, out, [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"tfs-jax: error: cannot read video {path}")
    assert not out.exists()
    assert _leftovers(tmp_path) == ([] if content is None else ["clip.mp4"])


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    for argv in (["prune", "x.mp4", "--out", str(tmp_path / "o")],  # no --ratio
                 ["crop"], [], ["demo", "--encoder", "resnet"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tfs-jax: error: "), argv
    out_file = tmp_path / "taken"
    out_file.write_text("")
    assert cli.main(["demo", "--out", str(out_file)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tfs_jax.cli", "prune", str(tmp_path / "none.mp4"),
         "--ratio", "2", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tfs-jax: error: retain_ratio=2.0 must be a finite number in (0, 1]"]
    assert proc.stdout == "" and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------
# Broken inputs: output and video paths, memory, damaged and short videos, flags


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tfs-jax: error: "), err
    return err[0]


def _mkdtemp_failing(code):
    def mkdtemp(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return mkdtemp


BAD_OUT = {
    # case: (the --out value, relative to tmp_path, or a function of tmp_path; the message)
    "under /proc": ("/proc/tfs-out", ": /proc is a kernel file system, not a place for output"),
    "/proc itself": ("/proc", ": /proc is a kernel file system"),
    "name too long": ("a" * 300, ": the name is too long for the file system"),
    "temporary name too long": ("a" * 250, "the temporary folder .aaa"),
    "a file in the way": ("file.txt/out", "file.txt is a file, not a folder"),
    "a file as --out": ("file.txt", " exists and is not a folder"),
    "an output name taken by a folder": ("taken", "figure.png is a folder in the way"),
    "no such parent": ("missing/out", ": no such folder"),
}


@needs_clips
@pytest.mark.parametrize("case", sorted(BAD_OUT))
def test_bad_output_path_exits_2_writing_nothing(case, tmp_path, monkeypatch, capsys):
    value, says = BAD_OUT[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "taken" / "figure.png").mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert cli.main(["demo", "--out", value, *TINY]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"tfs-jax: error: --out {value}") and says in line, line
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@needs_clips
@pytest.mark.parametrize("code, says", [(errno.EACCES, "permission denied"),
                                        (errno.EROFS, "read-only file system"),
                                        (errno.ENOSPC, "no space left")])
def test_unwritable_output_folder_exits_2(code, says, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(preflight.tempfile, "mkdtemp", _mkdtemp_failing(code))
    out = tmp_path / "out"
    assert cli.main(["demo", "--out", str(out), *TINY]) == 2
    assert _one_error_line(capsys) == (
        f"tfs-jax: error: --out {out}: cannot create a folder in {tmp_path}: {says}"
        + (" on the device" if code == errno.ENOSPC else ""))
    assert _leftovers(tmp_path) == []


@needs_clips
def test_existing_output_folder_not_writable_exits_2(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(preflight.os, "access", lambda p, mode: p != out and real_access(p, mode))
    assert cli.main(["demo", "--out", str(out), *TINY]) == 2
    assert _one_error_line(capsys) == f"tfs-jax: error: --out {out}: cannot write into this folder"
    assert _leftovers(tmp_path) == ["out"] and _leftovers(out) == []


def test_video_path_problems_exit_2(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("not a video")
    path = tmp_path / ("a" * 300 + ".mp4")
    assert cli.main(_prune_argv(path, tmp_path / "out", [])) == 2
    assert _one_error_line(capsys) == (f"tfs-jax: error: cannot read video {path}: the name "
                                       "is too long for the file system")
    assert cli.main(_prune_argv(tmp_path / "folder", tmp_path / "out", [])) == 2
    assert _one_error_line(capsys).startswith(
        f"tfs-jax: error: {tmp_path / 'folder'}: no video files in this folder (suffixes ")
    assert cli.main(_prune_argv(tmp_path / "*.webm", tmp_path / "out", [])) == 2
    assert _one_error_line(capsys) == (f"tfs-jax: error: {tmp_path / '*.webm'}: no file "
                                       "matches this pattern")
    assert _leftovers(tmp_path) == ["folder"]


def _meminfo(tmp_path, monkeypatch, kib):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       99999999 kB\nMemAvailable:   {kib} kB\n")
    monkeypatch.setattr(preflight, "MEMINFO", path)


def test_memory_estimate_by_hand():
    # 1 GiB + 10 frames of 150,528 bytes + tokens 10 * 256 * 588 * 4 bytes * 2.5
    # + 32 frames of 4:2:0 at 100 x 50 and one RGB frame.
    assert preflight.estimate_run_bytes(10, 588, 100, 50) == (
        2**30 + 1_505_280 + 15_052_800 + 32 * 7_500 + 15_000)
    assert preflight.estimate_run_bytes(16, 384, 640, 272) < 1.2 * 2**30  # the default run
    # A frame's pixels and tokens scale with its token budget: 64 tokens, a quarter.
    assert preflight.estimate_run_bytes(10, 588, 100, 50, frame_tokens=64) == (
        2**30 + 1_505_280 // 4 + 15_052_800 // 4 + 32 * 7_500 + 15_000)


def test_frames_beyond_half_the_memory_exit_2_before_decoding(tmp_path, monkeypatch, capsys):
    _meminfo(tmp_path, monkeypatch, 2 * 1024**2)  # 2 GiB available: 1 GiB is the limit
    monkeypatch.setattr(video.VideoFile, "read", None)  # decoding would fail loudly
    clip = _damaged.source_clip()
    assert cli.main(_prune_argv(clip, tmp_path / "out", ["--frames", "16"])) == 2
    line = _one_error_line(capsys)
    assert line == ("tfs-jax: error: --frames 16 needs about 1.0 GiB by estimate (frames of "
                    "176x144 video, tokens, pruner), more than half of the 2.0 GiB available "
                    "(MemAvailable): use fewer --frames")
    assert _leftovers(tmp_path) == ["meminfo"]


def test_memory_check_skipped_when_meminfo_is_unreadable(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "MEMINFO", tmp_path / "missing")
    assert preflight.memory_available() is None
    preflight.check_memory(10**7, 588, 640, 480)  # no guess, no refusal
    (tmp_path / "odd").write_text("MemAvailable: lots\n")
    monkeypatch.setattr(preflight, "MEMINFO", tmp_path / "odd")
    assert preflight.memory_available() is None


@needs_clips
def test_huge_frames_is_refused_at_once(tmp_path, capsys):
    available = preflight.memory_available()
    if available is None or available > 60 * 2**30:
        pytest.skip("needs a readable MemAvailable under 60 GiB")
    assert cli.main(["demo", "--frames", "100000", "--out", str(tmp_path / "o")]) == 2
    assert "--frames 100000 needs about 155.2 GiB" in _one_error_line(capsys)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind, says", [
    ("cut-at-packet-1", "the stream ends after 1 frame of the 120 its container declares "
                        "(truncated file?); --allow-partial goes on with the 1 frame decoded"),
    ("bad-nal", "decoding failed after "),
])
def test_damaged_video_exits_2_naming_frames_decoded(kind, says, tmp_path, capsys):
    path = _damaged.damaged(tmp_path, kind)
    files = _leftovers(tmp_path)
    assert cli.main(_prune_argv(path, tmp_path / "out", [])) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"tfs-jax: error: cannot read video {path}: ") and says in line
    assert "decoded" in line and "--allow-partial" in line
    assert _leftovers(tmp_path) == files  # no output folder, no temporary folder


def _run_ok(argv, capsys) -> tuple[dict, list[str]]:
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    out = pathlib.Path(argv[argv.index("--out") + 1])
    return json.loads((out / "summary.json").read_text()), err


def test_allow_partial_goes_on_and_records_it(tmp_path, capsys):
    path = _damaged.damaged(tmp_path, "cut-at-packet-1")
    summary, err = _run_ok(_prune_argv(path, tmp_path / "out", []) + ["--allow-partial"],
                           capsys)
    assert summary["source_frames"] == [0, 0, 0, 0]
    assert (summary["frames_decoded"], summary["frames_expected"]) == (1, 120)
    assert "its container declares" in summary["decode_error"]
    assert any(line.startswith(f"tfs-jax: warning: {path}: the stream ends after 1 frame")
               and "--allow-partial" in line for line in err)


def test_one_frame_clip_says_its_frames_repeat(tmp_path, capsys):
    path = _damaged.remux(tmp_path / "one.mp4", packets=1)
    summary, err = _run_ok(_prune_argv(path, tmp_path / "out", []), capsys)
    assert summary["source_frames"] == [0, 0, 0, 0] and summary["decode_error"] is None
    assert (summary["frames_decoded"], summary["frames_expected"]) == (1, 1)
    notes = [line for line in err if "fewer than --frames" in line]
    assert notes == [f"tfs-jax: note: {path} has only 1 frame, fewer than --frames 4: "
                     "the sampled frames repeat it (source_frames in the summary)"]
    # Four copies of one frame: nothing moves, coalescing drops all but frame 0's quota.
    budget = [line for line in err if "-token budget" in line]
    assert len(budget) == 1 and "--refill" in budget[0] and "--no-coalesce" in budget[0]


def test_no_coalesce_spends_the_whole_budget(tmp_path, capsys):
    path = _damaged.remux(tmp_path / "one.mp4", packets=1)
    summary, err = _run_ok(_prune_argv(path, tmp_path / "out", []) + ["--no-coalesce"], capsys)
    assert summary["config"]["coalesce"] is False and summary["config"]["refill"] is False
    assert summary["tokens_kept"] == summary["budget"] == 4 * 14 * 17 // 4
    assert not any("-token budget" in line for line in err)


def test_refill_and_no_coalesce_map_to_the_config(tmp_path, capsys):
    def config(*flags):
        args = cli.build_parser().parse_args(
            ["demo", "--out", str(tmp_path / "o"), "--encoder", "pixels", *flags])
        return cli.config_from_args(args)

    assert (config().coalesce, config().refill) == (True, False)
    assert (config("--refill").coalesce, config("--refill").refill) == (True, True)
    assert (config("--no-coalesce").coalesce, config("--no-coalesce").refill) == (False, False)
    assert cli.main(["demo", "--refill", "--no-coalesce", "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert "--refill" in line and "--no-coalesce" in line
    assert _leftovers(tmp_path) == []


def test_budget_note_only_when_a_third_is_unspent():
    from tfs_jax.config import TFSConfig

    def note(kept, **cfg):
        return app.budget_note({"tokens_kept": kept, "budget": 300, "kept_share": kept / 1200},
                               TFSConfig(**cfg)) or ""

    assert note(200) == "" and note(100, coalesce=False) == ""
    line = note(199)
    assert line.startswith("note: kept 199 of a 300-token budget (17% of the tokens "
                           "for --ratio 0.25): ") and "\n" not in line
    assert "--refill" in line and "--no-coalesce" in line
    assert "--no-coalesce" in note(10, refill=True) and "--refill)" in note(10, refill=True)


def test_figure_title_says_segment_or_segments():
    from tfs_jax.config import TFSConfig

    path = pathlib.Path("v.mp4")
    base = {"tokens_kept": 5, "tokens_in": 20, "encoder": "pixel-patch-14", "grid": [2, 5]}
    assert app.figure_title(path, {**base, "segments": 1}, TFSConfig()) == (
        "v.mp4: kept 5 of 20 tokens (ratio 0.25, 1 segment, pixel-patch-14, 2x5 tokens a frame)")
    assert ", 3 segments," in app.figure_title(path, {**base, "segments": 3}, TFSConfig())


# ----------------------------------------------------------------------------------------
# Flags: --version, negative values, the deprecated --k


def test_version_prints_the_package_version(capsys):
    import tfs_jax

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"tfs-jax {tfs_jax.__version__}\n"


@needs_clips
@pytest.mark.parametrize("argv", [["--weights", "-1,1,1"], ["--weights=-1,1,1"]])
def test_negative_weights_reach_the_config_check(argv, tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "o"), *argv]) == 2
    line = _one_error_line(capsys)
    assert "factor_weights" in line and "must be non-negative" in line, line
    assert _leftovers(tmp_path) == []


def test_old_k_flag_works_with_a_deprecation_warning(tmp_path, capsys):
    args = cli.build_parser().parse_args(["demo", "--out", str(tmp_path), "--k", "7"])
    with pytest.warns(DeprecationWarning, match="--clusters"):
        assert cli.config_from_args(args).num_clusters == 7
    assert capsys.readouterr().err == (
        "tfs-jax: note: --k is deprecated: use --clusters (TFSConfig.num_clusters)\n")
    args = cli.build_parser().parse_args(["demo", "--out", str(tmp_path), "--clusters", "7"])
    assert cli.config_from_args(args).num_clusters == 7
    args = cli.build_parser().parse_args(
        ["demo", "--out", str(tmp_path), "--clusters", "7", "--k", "7"])
    with pytest.raises(cli.UsageError, match="not both"):
        cli.config_from_args(args)


def test_a_subcommand_is_one_entry(monkeypatch, capsys):
    """`COMMANDS` takes an `(add_parser, run)` pair (or a module's name): that is all a
    subcommand needs, and a ValueError from its `run` is one line and exit 2."""
    def add_parser(subparsers):
        parser = subparsers.add_parser("echo")
        parser.add_argument("word")
        return parser

    def run(args):
        if args.word == "bad":
            raise ValueError("word='bad' is not a good word")
        print(args.word)
        return 0

    monkeypatch.setattr(cli, "COMMANDS", cli.COMMANDS + ((add_parser, run),))
    assert cli.main(["echo", "hello"]) == 0 and capsys.readouterr().out == "hello\n"
    assert cli.main(["echo", "bad"]) == 2
    assert _one_error_line(capsys) == "tfs-jax: error: word='bad' is not a good word"


# ----------------------------------------------------------------------------------------
# No crop: the whole frame on a non-square grid; many videos in one call

SMALL = ["--frames", "4", "--encoder", "pixels", "--quiet", "--columns", "2",
         "--ratio", "0.5", "--clusters", "4"]


@pytest.mark.parametrize("width, height, grid", [(360, 640, (5, 3)), (1600, 32, (1, 16))])
def test_prune_keeps_the_whole_frame(width, height, grid, tmp_path, monkeypatch, capsys):
    path = _clips.write(tmp_path / "clip.mp4", width, height)
    out = tmp_path / "out"
    opened, real_open = [], _clips.av.open
    monkeypatch.setattr(_clips.av, "open",
                        lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert cli.main(["prune", str(path), "--out", str(out), "--max-frame-tokens", "16",
                     *SMALL]) == 0
    assert opened == [str(path)]  # the run opens the video once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid"] == list(grid) and summary["source_size"] == [height, width]
    assert summary["frame_size"] == [14 * grid[0], 14 * grid[1]]
    assert summary["max_frame_tokens"] == 16 and summary["tokens_in"] == 4 * grid[0] * grid[1]
    with np.load(out / "kept.npz") as z:
        assert z["keep_mask"].shape == (4, *grid)
    # The tokens come from the whole frame: all four coloured bands are in the frames.
    frames = video.read_video(path, 4, progress=False, resize=lambda h, w: video.fit_pixel_budget(
        h, w, max_pixels=16 * 196)).frames
    for name, colour in _clips.band_colours(frames[1]).items():
        np.testing.assert_allclose(colour, _clips.BANDS[name], atol=10, err_msg=name)
    image = _read_png(out / "figure.png")
    assert image[..., :3].std() > 0.05


def test_a_folder_of_videos_gives_one_summary_line_each(tmp_path, monkeypatch, capsys):
    """Two videos of one size share one compiled program; a third grid compiles a second."""
    import jax

    folder = tmp_path / "clips"
    folder.mkdir()
    _clips.write(folder / "a.mp4", 64, 48)
    _clips.write(folder / "b.mp4", 64, 48, frames=6)
    _clips.write(folder / "c.mp4", 48, 64)
    (folder / "notes.txt").write_text("not a video")  # skipped: not a video suffix
    compiles, real = [], jax.stages.Lowered.compile  # the run compiles the pruner ahead of time
    monkeypatch.setattr(jax.stages.Lowered, "compile",
                        lambda self, *a, **k: compiles.append(1) or real(self, *a, **k))
    monkeypatch.setattr(app, "_COMPILED", {})
    out = tmp_path / "out"
    assert cli.main(["prune", str(folder), "--out", str(out), "--max-frame-tokens", "12",
                     "--no-figure", *SMALL]) == 0
    lines = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert [pathlib.Path(line["video"]).name for line in lines] == ["a.mp4", "b.mp4", "c.mp4"]
    assert all(line["error"] is None for line in lines)
    assert all(SUMMARY_KEYS - {"video"} <= set(line) for line in lines)
    assert [line["grid"] for line in lines] == [[3, 4], [3, 4], [4, 3]]
    assert len(compiles) == 2  # one program per distinct grid
    assert _leftovers(out) == ["a", "b", "c", "summary.jsonl"]
    assert _leftovers(out / "a") == ["kept.npz"]  # --no-figure
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"tfs-jax: wrote 3 of 3 videos and summary.jsonl to {out}"


def test_a_bad_video_among_several_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    good = _clips.write(tmp_path / "good.mp4", 64, 48)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video\n" * 50)
    out = tmp_path / "out"
    argv = ["prune", str(bad), str(tmp_path / "g*.mp4"), "--out", str(out),
            "--max-frame-tokens", "12", *SMALL]
    assert cli.main(argv) == 1
    lines = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["video"] == str(bad) and lines[1]["video"] == str(good)
    assert lines[0]["error"].startswith(f"cannot read video {bad}: ")
    assert lines[0]["folder"] is None and "grid" not in lines[0]
    assert lines[1]["error"] is None and lines[1]["folder"] == "good"
    assert _leftovers(out) == ["good", "summary.jsonl"]
    assert _leftovers(out / "good") == ["figure.png", "kept.npz"]
    err = capsys.readouterr().err
    assert "1 failed (their errors are in summary.jsonl)" in err.splitlines()[-1]


# ----------------------------------------------------------------------------------------
# figures.py


def test_sample_columns_spreads_first_to_last():
    assert figures.sample_columns(16, 4).tolist() == [0, 5, 10, 15]
    assert figures.sample_columns(3, 8).tolist() == [0, 1, 2]
    assert figures.sample_columns(1, 1).tolist() == [0]
    with pytest.raises(ValueError):
        figures.sample_columns(0, 2)


def test_normalise_saliency_clips_quantiles_and_ignores_padding():
    s = np.zeros((1, 1, 101, 3), np.float32)
    s[..., 0] = np.arange(101)  # valid values 1..100: quantiles 2.98 and 98.02 -> 0 and 1
    s[..., 1] = 5.0  # constant -> 0
    s[0, 0, 0, 2] = 1e9  # a padded outlier must not matter
    s[0, 0, 1:, 2] = np.arange(100)
    valid = np.ones((1, 1, 101), bool)
    valid[0, 0, 0] = False
    out = figures.normalise_saliency(s, valid)
    np.testing.assert_allclose(out[0, 0, [2, 50, 99], 0],
                               [0.0, (50 - 2.98) / 95.04, 1.0], atol=1e-6)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 100, 0] == 1  # padding 0; 100 clipped
    assert np.all(out[..., 1] == 0)
    assert out[0, 0, 0, 2] == 0 and out[0, 0, -1, 2] == 1
    np.testing.assert_allclose(out[0, 0, 50, 2], (49 - 1.98) / (97.02 - 1.98), atol=1e-6)


def test_overlays_mark_kept_tokens_and_clusters():
    from matplotlib import colormaps

    keep = np.array([[True, False]])
    assert figures.kept_overlay(keep)[..., 3].tolist() == [[0.0, pytest.approx(0.78)]]
    rgba = figures.cluster_colours(np.array([[0, 20, -1]]), colormaps["tab20"])
    np.testing.assert_allclose(rgba[0, 0, :3], rgba[0, 1, :3])  # labels wrap at 20 colours
    assert rgba[0, 2, 3] == 0 and rgba[0, 0, 3] > 0


def test_tfs_figure_lays_out_rows_and_sampled_columns():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 28, 28, 3), dtype=np.uint8)
    saliency = rng.random((5, 2, 2, 3)).astype(np.float32)
    cluster = np.tile(np.arange(4).reshape(1, 2, 2), (5, 1, 1))
    keep = np.zeros((5, 2, 2), bool)
    keep[:, 0, 0] = True
    segment = np.array([0, 0, 1, 1, 2])
    fig = figures.tfs_figure(frames, saliency, cluster, keep, segment, columns=3, title="t",
                             source_frames=np.array([3, 9, 15, 21, 27]))
    assert fig._suptitle.get_text() == "t\nframes 0, 2, 4 of 5 shown (source frames 3, 15, 27)"
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 6 * 3  # six rows, frames 0, 2, 4
    titles = [ax.get_title() for ax in image_axes[:3]]
    assert titles == ["frame 0, segment 0", "frame 2, segment 1", "frame 4, segment 2"]
    assert [ax.get_ylabel() for ax in image_axes[::3]] == list(figures.ROW_LABELS)
    assert image_axes[-1].get_xlabel() == "kept 1/4"
    overlay = image_axes[-1].images[-1].get_array()
    np.testing.assert_allclose(overlay, figures.kept_overlay(keep[4]))
    with pytest.raises(ValueError):
        figures.tfs_figure(frames[:4], saliency, cluster, keep, segment)
