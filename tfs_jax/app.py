"""One `tfs-jax prune` run as a library call: `prune_videos(PruneRequest(...))`.

Why a module of its own (`app`, not `cli` or `run`): this is the application layer above
the pure library, the one place that turns video files into files on disk (decode, encode,
prune, draw, write). The command line only parses arguments into a `PruneRequest` and
prints the `RunReport`; the experiments and the tests call `prune_videos` directly. (A
module named `run` would read as a function, `tfs_jax.run(...)`, and clash with the
`run(args)` that every subcommand module exposes.)

A run, for each video: open it once (`video.VideoFile`), check the run's memory against
`MemAvailable` (`preflight.check_memory`), decode `num_frames` frames at native aspect
resized to at most `max_frame_tokens` patches (`video.fit_pixel_budget`: no crop), encode
them on that `(H, W)` grid, refuse non-finite tokens (counted on the device), prune with
`tfs_prune` compiled once per distinct grid (XLA CPU optimisation level 0: same results,
about a third of the compile), and write:

* one video (`per_video=False`): `figure.png`, `summary.json` and `kept.npz` into `out`;
* several (`per_video=True`): `out/<stem>/figure.png` and `out/<stem>/kept.npz` per video
  (`<stem>-2`, ... when stems repeat) and one `out/summary.jsonl`, a line per video with
  the fields of `summary.json` plus `folder` and `error`. A video that fails (a `ValueError`:
  unreadable, damaged, too big, non-finite tokens) gets a line with its error and the run
  goes on.

Everything is written into a temporary folder beside `out` and moved into place when the
run is complete, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable

from tfs_jax import preflight
from tfs_jax.config import TFSConfig

SINGLE_FILES = ("figure.png", "summary.json", "kept.npz")
VIDEO_FILES = ("figure.png", "kept.npz")
JSONL = "summary.jsonl"
DEFAULT_FRAME_TOKENS = 256  # 16 x 16 for a square video, the grid of the 224-px crop


@dataclasses.dataclass(frozen=True)
class PruneRequest:
    """One run: which videos, where their files go, and how they are pruned.

    Attributes:
      videos: the video files, in order.
      out: the output folder (new, or an existing one: files of the same names are replaced).
      config: the pruner's `TFSConfig`.
      per_video: files per video in `out/<stem>/` and one `out/summary.jsonl` (several
        videos); False: the one video's files straight into `out`.
      num_frames: frames sampled per video (`video.sample_indices`).
      max_frame_tokens: token budget per frame: frames keep their aspect, resized so that
        their `(H, W)` grid of 14-px patches has at most this many tokens.
      encoder: "auto", "dinov2" or "pixels" (`encoders.get_encoder`).
      columns: frames shown in the figure; figure: draw it at all.
      kept: write `kept.npz`.
      progress: tqdm bars (decode, encode, and over the videos when several).
      allow_partial: go on with the frames a damaged video gave, instead of refusing it.
    """

    videos: tuple[pathlib.Path, ...]
    out: pathlib.Path
    config: TFSConfig = dataclasses.field(default_factory=TFSConfig)
    per_video: bool = False
    num_frames: int = 16
    max_frame_tokens: int = DEFAULT_FRAME_TOKENS
    encoder: str = "auto"
    columns: int = 8
    figure: bool = True
    kept: bool = True
    progress: bool = True
    allow_partial: bool = False

    def __post_init__(self):
        if not self.videos:
            raise ValueError("no video to prune")
        if not self.per_video and len(self.videos) != 1:
            raise ValueError(f"per_video=False takes one video, got {len(self.videos)}")
        for name in ("num_frames", "max_frame_tokens", "columns"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("num_", "").replace("_", "-")
                raise ValueError(f"{flag} {getattr(self, name)} must be >= 1")


@dataclasses.dataclass(frozen=True)
class VideoReport:
    """What became of one video: its summary (`summary.json`'s fields) or its error."""

    video: pathlib.Path
    folder: str | None  # under `out`: "" for a single video, "<stem>" for several
    summary: dict | None
    error: str | None


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What a run wrote: `out`, whether it existed before, and a report per video."""

    out: pathlib.Path
    reused: bool
    videos: tuple[VideoReport, ...]

    @property
    def failed(self) -> int:
        return sum(v.error is not None for v in self.videos)


def say_stderr(line: str) -> None:
    print(f"tfs-jax: {line}", file=sys.stderr)


def prune_videos(request: PruneRequest, *, say: Callable[[str], None] = say_stderr
                 ) -> RunReport:
    """Check, then decode, encode, prune and write every video of `request`.

    Args:
      request: the run.
      say: receives each note and warning (one line, without the `tfs-jax: ` prefix).
    Returns:
      a `RunReport`.
    Raises:
      ValueError: a bad output folder, or (one video) a bad video, before anything is
        written; nothing is left behind.
    """
    names = _folder_names(request.videos) if request.per_video else [""]
    files, folders = ((JSONL,), names) if request.per_video else (SINGLE_FILES, ())
    out = preflight.check_out(request.out, files, folders)
    if not request.per_video:
        preflight.check_video_file(request.videos[0])
    reused = out.is_dir()
    workdir = preflight.make_workdir(out)
    try:
        reports = _prune_all(request, workdir, names, say)
        _publish(workdir, out)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return RunReport(out, reused, tuple(reports))


def _prune_all(request, workdir: pathlib.Path, names: list[str], say) -> list[VideoReport]:
    from tqdm.auto import tqdm

    from tfs_jax import encoders

    encoder = encoders.get_encoder(request.encoder)
    announced = []

    def announce():  # after the first decode, so that a refused video is the only line
        if not announced:
            announced.append(say(f"encoder {encoder[1]}: {encoder[2]}"))

    reports = []
    bar = tqdm(list(zip(request.videos, names)), desc="videos", unit="video", leave=False,
               disable=not (request.progress and request.per_video))
    for path, name in bar:
        reports.append(_one_video(request, path, workdir, name, encoder, announce, say))
    if request.per_video:
        lines = [json.dumps({"video": str(r.video), "folder": r.folder, "error": r.error,
                             **(r.summary or {})}) for r in reports]
        (workdir / JSONL).write_text("".join(line + "\n" for line in lines))
    else:
        summary = reports[0].summary
        summary["files"] = sorted(summary["files"] + ["summary.json"])
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return reports


def _one_video(request, path, workdir, name, encoder, announce, say) -> VideoReport:
    """`VideoReport` of one video; with several videos its ValueError is its report."""
    folder = workdir / name
    try:
        summary = prune_one(request, path, folder, encoder, announce=announce,
                            say=_naming(path, say) if request.per_video else say)
    except ValueError as err:
        if not request.per_video:
            raise
        shutil.rmtree(folder, ignore_errors=True)
        message = " ".join(str(err).split())
        say(f"error: {message} (going on with the other videos)")
        return VideoReport(path, None, None, message)
    return VideoReport(path, name, summary, None)


def _naming(path: pathlib.Path, say):
    """`say`, with the video's path in front of the lines that do not name it already."""
    return lambda line: say(line if str(path) in line else f"{path}: {line}")


def prune_one(request: PruneRequest, path: pathlib.Path, folder: pathlib.Path, encoder, *,
              announce=lambda: None, say=say_stderr) -> dict:
    """Decode, encode, prune and write one video into `folder`; returns its summary.

    `encoder` is `encoders.get_encoder(request.encoder)`'s triple. Raises `ValueError` for
    a video that cannot be used (nothing is written then).
    """
    import jax

    from tfs_jax import encoders
    from tfs_jax.checks import check_finite

    seconds = {}
    read = _timed(seconds, "decode", decode, request, path, say)
    announce()
    tokens = _timed(seconds, "encode", lambda: encoders.encode_frames(
        encoder[0], read.frames, progress=request.progress).block_until_ready())
    check_finite(tokens)  # on the device: one count comes back, the tokens stay
    pruner = _timed(seconds, "prune_compile", compile_pruner, tokens, request.config)
    result = _timed(seconds, "prune_run",
                    lambda: jax.block_until_ready(pruner(tokens, request.config)))
    kept = kept_arrays(tokens, result)
    summary = summarise(request, path, read, tokens.shape, kept["result"], encoder)
    note = budget_note(summary, request.config)
    if note:
        say(note)
    folder.mkdir(exist_ok=True)
    if request.figure:
        _timed(seconds, "figure", draw, request, path, read, kept["result"], summary,
               folder / "figure.png")
    if request.kept:
        save_kept(folder / "kept.npz", kept)
    seconds["total"] = sum(seconds.values())
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    summary["files"] = sorted(p.name for p in folder.iterdir())
    return summary


def _timed(seconds: dict, stage: str, fn, *args):
    tic = time.perf_counter()
    out = fn(*args)
    seconds[stage] = time.perf_counter() - tic
    return out


# ----------------------------------------------------------------------------- stages


def decode(request: PruneRequest, path: pathlib.Path, say=say_stderr):
    """The video's frames (`video.VideoRead`), from one open of the file: its memory
    checked first, frames resized whole to `max_frame_tokens` patches. A damaged video is
    a `ValueError` naming the file and the frames decoded unless `allow_partial`; a damaged
    or short clip is said in one line."""
    from tfs_jax import video

    resize = functools.partial(video.fit_pixel_budget, multiple=14,
                               max_pixels=request.max_frame_tokens * preflight.PATCH_PIXELS)
    with video.VideoFile(path) as clip:
        preflight.check_memory(request.num_frames, preflight.TOKEN_DIM[request.encoder],
                               clip.width, clip.height, frame_tokens=request.max_frame_tokens)
        try:
            read = clip.read(request.num_frames, resize=resize,
                             allow_partial=request.allow_partial, progress=request.progress)
        except video.DamagedVideoError as err:
            raise ValueError(f"cannot read video {err.path}: {err.reason}; --allow-partial "
                             f"goes on with the {video.frames_phrase(err.decoded)} decoded"
                             ) from None
    _decode_notes(request, path, read, say)
    return read


def _decode_notes(request, path, read, say) -> None:
    from tfs_jax.video import frames_phrase

    n = read.frames_decoded
    if read.partial:
        say(f"warning: {path}: {read.error}; going on with the {frames_phrase(n)} decoded "
            "(--allow-partial; recorded in the summary)")
    if n < request.num_frames:
        which = "it" if n == 1 else "some of them"
        say(f"note: {path} has only {frames_phrase(n)}, fewer than --frames "
            f"{request.num_frames}: the sampled frames repeat {which} (source_frames in the "
            "summary)")


_COMPILED: dict = {}


def compile_pruner(tokens, config: TFSConfig):
    """`tfs_prune` lowered and compiled for these shapes and static settings (XLA CPU
    optimisation level 0), reused for later calls with the same ones in this process: one
    program per distinct grid."""
    import jax

    from tfs_jax.pipeline import tfs_prune

    key = (tokens.shape, str(tokens.dtype), jax.tree_util.tree_structure(config))
    if key not in _COMPILED:
        lowered = jax.jit(tfs_prune).lower(tokens, config)
        options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
        _COMPILED[key] = lowered.compile(options)
    return _COMPILED[key]


def kept_arrays(tokens, result) -> dict:
    """On the device, the kept tokens with their `(t, h, w)` positions and saliency
    (`gather_kept`), then everything brought to the host at once, cut to `num_kept` rows:
    `result` (the `TFSResult` in numpy), `tokens`, `positions`, `saliency`."""
    import jax

    from tfs_jax.decision import gather_kept
    from tfs_jax.decision import gather_slots

    kept, positions, _ = gather_kept(tokens, result)
    saliency = gather_slots(result.saliency.reshape(-1, 3), result)
    host, kept, positions, saliency = jax.device_get((result, kept, positions, saliency))
    n = int(host.num_kept)
    return {"result": host, "tokens": kept[:n], "positions": positions[:n],
            "saliency": saliency[:n]}


def summarise(request, path, read, shape: tuple, result, encoder) -> dict:
    """The video's summary (timings and files aside) from the token shape, the result (in
    numpy) and the decoding (`video.VideoRead`)."""
    from tfs_jax.budget import static_budget

    t, h, w, d = shape
    kept, cfg = int(result.num_kept), request.config
    return {
        "video": str(path), "encoder": encoder[1], "encoder_note": encoder[2],
        "frames": t, "source_frames": read.source_frames.tolist(),
        "frames_decoded": read.frames_decoded, "frames_expected": read.frames_expected,
        "decode_error": read.error,
        "source_size": list(read.source_size), "frame_size": list(read.frames.shape[1:3]),
        "max_frame_tokens": request.max_frame_tokens,
        "grid": [h, w], "token_dim": d, "tokens_in": t * h * w,
        "budget": static_budget(t * h * w, cfg.retain_ratio),  # K_v: every token is valid
        "tokens_kept": kept, "kept_share": kept / (t * h * w),
        "segments": int(result.segment.max()) + 1,
        "segment_of_frame": result.segment.tolist(),
        "config": {"retain_ratio": cfg.retain_ratio, "num_clusters": cfg.num_clusters,
                   "factor_weights": [float(x) for x in cfg.factor_weights],
                   "coalesce": cfg.coalesce, "refill": cfg.refill},
    }


def budget_note(summary: dict, config: TFSConfig) -> str | None:
    """A note when coalescing left more than a third of the budget unspent, else None."""
    kept, budget = summary["tokens_kept"], summary["budget"]
    if not config.coalesce or 3 * (budget - kept) <= budget:
        return None
    if config.refill:
        how = ("only that many tokens moved; --no-coalesce (without --refill) keeps static "
               "tokens too")
    else:
        how = ("coalescing dropped static tokens after the budget was spent; --refill drops "
               "them before it (the budget goes to tokens that moved), --no-coalesce keeps them")
    return (f"note: kept {kept} of a {budget}-token budget ({summary['kept_share']:.0%} of "
            f"the tokens for --ratio {config.retain_ratio:g}): {how}")


def figure_title(path: pathlib.Path, summary: dict, config: TFSConfig) -> str:
    n, (h, w) = summary["segments"], summary["grid"]
    return (f"{path.name}: kept {summary['tokens_kept']} of {summary['tokens_in']} tokens "
            f"(ratio {config.retain_ratio:g}, {n} segment{'s' * (n != 1)}, "
            f"{summary['encoder']}, {h}x{w} tokens a frame)")


def draw(request, path, read, result, summary, png: pathlib.Path) -> None:
    """The Figure-2 grid of the video (`figures.tfs_figure`) at the frames' true aspect."""
    from tfs_jax import figures

    figures.tfs_figure(read.frames, result.saliency, result.cluster, result.keep_mask,
                       result.segment, columns=request.columns,
                       title=figure_title(path, summary, request.config),
                       source_frames=read.source_frames).savefig(png, dpi=90)


def save_kept(path: pathlib.Path, kept: dict) -> None:
    """`kept.npz`: kept flat indices `(n,)`, positions `(n, 3)` as `(t, h, w)` (from
    `gather_kept`), tokens `(n, D)`, their saliency `(n, 3)`, and the full `(T, H, W, ...)`
    maps of the result."""
    import numpy as np

    result = kept["result"]
    n = len(kept["positions"])
    np.savez_compressed(
        path, indices=result.indices[:n], positions=kept["positions"], tokens=kept["tokens"],
        saliency=result.saliency, kept_saliency=kept["saliency"],
        keep_mask=result.keep_mask, motion=result.motion, segment=result.segment,
        cluster=result.cluster)


# ----------------------------------------------------------------------------- files


def _folder_names(videos) -> list[str]:
    """Each video's folder under `out`: its stem, `<stem>-2`, `<stem>-3` ... when stems
    repeat (`a/clip.mp4`, `b/clip.mp4`)."""
    names = []
    for path in videos:
        stem = pathlib.Path(path).stem or "video"
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def _publish(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Move the finished files of `src` into `dst`: the whole folder when `dst` is new,
    else file by file (folders merged), replacing files of the same names."""
    if not dst.exists():
        os.replace(src, dst)
        return
    for item in src.iterdir():
        if item.is_dir() and (dst / item.name).is_dir():
            _publish(item, dst / item.name)
        else:
            os.replace(item, dst / item.name)
    src.rmdir()
