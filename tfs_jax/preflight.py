"""Guards that run before a `tfs-jax prune` run does any work: the output folder, the
video paths, and the run's memory against what the machine has.

Each guard raises a `ValueError` whose message is the one line the command prints (it names
the flag, the path and the reason); the command line turns it into exit status 2. Nothing
here decodes, encodes or compiles: the guards read the file system and `/proc/meminfo`,
and `make_workdir` creates the one temporary folder the run writes into, to be sure the OS
allows it before the work starts.
"""

from __future__ import annotations

import errno
import os
import pathlib
import stat
import tempfile

MEMINFO = pathlib.Path("/proc/meminfo")
GIB = 2**30
PATCH_PIXELS = 14 * 14  # pixels under one token (14-px patches)
# Token width D per --encoder: DINOv2-S/14 384, pixel patches 14 * 14 * 3; auto takes
# the wider, whichever encoder it ends up with.
TOKEN_DIM = {"dinov2": 384, "pixels": 588, "auto": 588}
# Peak RSS of `tfs-jax prune bikes.mp4` (ru_maxrss; XLA CPU, 2 cores; measured on the
# 224-px square crop of 16 x 16 tokens), pixels: 714 MiB at --frames 16, 1664 MiB at 1024
# and 3008 MiB at 2048; DINOv2: 925 MiB at 16, 1080 MiB at 256. The fixed part (JAX, XLA
# compiles, the DINOv2 weights) is under 1 GiB; each frame adds 1.31 MiB = its 224 x 224 x 3
# pixels (0.14 MiB) + 2.03 x its tokens (0.57 MiB at D = 588): the tokens themselves plus
# about as much again of work, the encoder concatenating its batches (a second copy) or the
# pruner's XLA temporaries (0.23-0.36 x the tokens by `memory_analysis()`, on top of its
# input). TOKEN_WORK_FACTOR rounds that 1.03 up. A frame's pixels and tokens scale with its
# token budget (`--max-frame-tokens`, 256 above), which bounds both.
RUN_FIXED_BYTES = GIB
TOKEN_WORK_FACTOR = 1.5
# While decoding, H.264/HEVC keep up to 16 reference frames and frame threading one more
# frame per thread (at most 16): 4:2:0 frames of 1.5 bytes per pixel.
SOURCE_FRAMES_IN_FLIGHT = 32

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


def os_reason(err: OSError) -> str:
    """A short reason for an OS error (`"permission denied"`), without errno or path."""
    return _OS_REASONS.get(err.errno) or (os.strerror(err.errno) if err.errno else str(err))


# ----------------------------------------------------------------------------- memory


def estimate_run_bytes(num_frames: int, token_dim: int, width: int, height: int, *,
                       frame_tokens: int = 256) -> int:
    """Bytes a run of `num_frames` frames needs at its peak, by the measured model above:
    the fixed part, the sampled frames (`frame_tokens` patches of pixels each, at most),
    the tokens and their work, the decoder's frames of `width x height`."""
    frames = num_frames * frame_tokens * PATCH_PIXELS * 3
    tokens = num_frames * frame_tokens * token_dim * 4
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


def check_memory(num_frames: int, token_dim: int, width: int, height: int, *,
                 frame_tokens: int = 256) -> None:
    """`ValueError` when the run's estimate exceeds half of the memory available (no check
    when /proc/meminfo cannot be read: better none than a guess)."""
    available = memory_available()
    need = estimate_run_bytes(num_frames, token_dim, width, height, frame_tokens=frame_tokens)
    if available is not None and need > available / 2:
        raise ValueError(
            f"--frames {num_frames} needs about {need / GIB:.1f} GiB by estimate (frames of "
            f"{width}x{height} video, tokens, pruner), more than half of the "
            f"{available / GIB:.1f} GiB available (MemAvailable): use fewer --frames")


# ----------------------------------------------------------------------------- paths


def check_video_file(video: pathlib.Path) -> pathlib.Path:
    """`video` unless it is missing, empty, a folder, or its name cannot be looked up."""
    try:
        info = video.stat()
    except FileNotFoundError:
        raise ValueError(f"cannot read video {video}: no such file") from None
    except OSError as err:
        raise ValueError(f"cannot read video {video}: {os_reason(err)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"cannot read video {video}: it is a folder, not a video file")
    if info.st_size == 0 and stat.S_ISREG(info.st_mode):
        raise ValueError(f"cannot read video {video}: the file is empty")
    return video


def check_out(out: pathlib.Path, files=(), folders=()) -> pathlib.Path:
    """`out` checked as an output folder: new, or a writable folder where no folder is in
    the way of an output file (`files`) and no file in the way of an output folder
    (`folders`); `ValueError` naming the path and the reason otherwise."""
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop
        reason = os_reason(err) if isinstance(err, OSError) else err
        raise ValueError(f"--out {out}: {reason}") from None
    if len(resolved.parts) > 1 and resolved.parts[1] in ("proc", "sys"):
        raise ValueError(f"--out {out}: /{resolved.parts[1]} is a kernel file system, "
                         "not a place for output files")
    try:
        is_dir = out.is_dir() if out.exists() else None
        blocker = next((a for a in reversed(out.parents) if a.exists() and not a.is_dir()),
                       None)
    except OSError as err:  # exists() lets ENAMETOOLONG, EACCES through
        raise ValueError(f"--out {out}: {os_reason(err)}") from None
    if is_dir is False:
        raise ValueError(f"--out {out} exists and is not a folder")
    if blocker is not None:
        raise ValueError(f"--out {out}: {blocker} is a file, not a folder")
    if is_dir:
        _check_existing_out(out, files, folders)
    return out


def _check_existing_out(out: pathlib.Path, files, folders) -> None:
    if not os.access(out, os.W_OK | os.X_OK):  # EACCES, or EROFS
        raise ValueError(f"--out {out}: cannot write into this folder")
    for name in files:
        if (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a folder in the way of an output "
                             "file")
    for name in folders:
        if (out / name).exists() and not (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a file in the way of an output "
                             "folder")


def make_workdir(out: pathlib.Path) -> pathlib.Path:
    """Create the temporary folder beside `out` that the run writes into (mode as `mkdir`
    would give); `ValueError` naming the path and the reason when the OS refuses."""
    resolved = out.resolve()
    parent, prefix = resolved.parent, f".{resolved.name}.tmp-"
    try:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as err:
        reason = os_reason(err)
        if err.errno == errno.ENAMETOOLONG:
            limit = _name_max(parent)
            reason = (f"the name is too long: the temporary folder {prefix}XXXXXXXX beside it "
                      f"needs {len(prefix) + 8} characters, {parent} allows {limit}")
        raise ValueError(f"--out {out}: cannot create a folder in {parent}: {reason}") from None
    umask = os.umask(0)
    os.umask(umask)
    workdir.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the output's mode
    return workdir


def _name_max(folder: pathlib.Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255
