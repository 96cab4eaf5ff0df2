"""Tiny synthetic clips of any frame size, written with PyAV, for the no-crop tests.

Each frame is grey with a coloured band along each edge (an eighth of the side: red left,
blue right, green top, magenta bottom), so a centre crop visibly loses two of them, and a
white square that moves one step per frame along the longer side, so the pruner has motion
to find.
"""

import pathlib

import numpy as np
from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

av = needs("av", why="writing test clips")

BANDS = {"left": (255, 0, 0), "right": (0, 0, 255), "top": (0, 255, 0), "bottom": (255, 0, 255)}


def frame(width: int, height: int, index: int) -> np.ndarray:
    """`(height, width, 3)` uint8 frame `index` of the clip."""
    rgb = np.full((height, width, 3), 128, np.uint8)
    bx, by = max(1, width // 8), max(1, height // 8)
    rgb[:by], rgb[-by:] = BANDS["top"], BANDS["bottom"]
    rgb[:, :bx], rgb[:, -bx:] = BANDS["left"], BANDS["right"]  # sides drawn over the corners
    side = max(2, min(width, height) // 3)
    if width >= height:
        x, y = bx + (index * side // 2) % max(1, width - 2 * bx - side), (height - side) // 2
    else:
        x, y = (width - side) // 2, by + (index * side // 2) % max(1, height - 2 * by - side)
    rgb[y:y + side, x:x + side] = 255
    return rgb


def write(path: pathlib.Path, width: int, height: int, frames: int = 8) -> pathlib.Path:
    """An MPEG-4 Part 2 clip (every PyAV build has the encoder) of `frames` frames."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}  # near-lossless: the bands keep their colours
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame(width, height, i))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def band_colours(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Mean colour of the outermost pixel row or column on each edge of a decoded frame."""
    rgb = rgb.astype(np.float64)
    return {"left": rgb[:, 0].mean(0), "right": rgb[:, -1].mean(0),
            "top": rgb[0, rgb.shape[1] // 3: -rgb.shape[1] // 3 or None].mean(0),
            "bottom": rgb[-1, rgb.shape[1] // 3: -rgb.shape[1] // 3 or None].mean(0)}
