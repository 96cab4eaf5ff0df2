"""Figure-2-style pictures of a pruning decision (the paper's qualitative figure).

Rows, top to bottom: input frames, Dynamic Saliency `S_M`, Regional Saliency `S_R`, Focal
Saliency `S_F`, the cluster map (one colour per cluster of the frame's segment) and the kept
tokens over the frames (dropped tokens darkened); columns: a sample of frames.

Each saliency map is scaled over the whole video's valid tokens (between its 2% and 98%
quantiles, so colours compare across frames and one extreme token does not wash the map
out), and drawn over a dimmed grey copy of the frame so that it reads against the content.

Needs matplotlib (the `experiments` extra). Figures are built on `matplotlib.figure.Figure`
directly, never through pyplot, so no global state or GUI backend is involved.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float, Int, UInt8

ROW_LABELS = (
    "Input frame",
    "Dynamic $S_M$\n(motion)",
    "Regional $S_R$\n(centre-surround)",
    "Focal $S_F$\n(unpredictable detail)",
    "Cluster map\n(per segment)",
    "Kept tokens",
)


def sample_columns(num_frames: int, columns: int) -> np.ndarray:
    """`min(columns, T)` frame indices spread evenly over `[0, T - 1]`, first and last included.

    >>> sample_columns(16, 4).tolist()
    [0, 5, 10, 15]
    """
    if num_frames < 1 or columns < 1:
        raise ValueError(f"{num_frames=} and {columns=} must be >= 1")
    n = min(columns, num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, n)).astype(np.int64))


def normalise_saliency(
    saliency: Float[np.ndarray, "t h w 3"],
    valid: Bool[np.ndarray, "t h w"] | None = None,
    *,
    clip: float = 0.02,
) -> Float[np.ndarray, "t h w 3"]:
    """Each factor scaled to [0, 1] between its `clip` and `1 - clip` quantiles over the
    valid tokens of the whole video (plain min-max when those coincide); 0 on padding and
    for a constant factor. Clipping keeps one extreme token from washing out the map.
    """
    s = np.asarray(saliency, np.float64)
    valid = np.ones(s.shape[:3], bool) if valid is None else np.asarray(valid, bool)
    out = np.zeros_like(s)
    if not valid.any():
        return out.astype(np.float32)
    for f in range(s.shape[-1]):
        vals = s[..., f][valid]
        lo, hi = np.quantile(vals, [clip, 1 - clip])
        if hi - lo <= 1e-6 * max(1.0, abs(hi)):
            lo, hi = vals.min(), vals.max()
        if hi - lo > 1e-6 * max(1.0, abs(hi)):
            out[..., f] = np.where(valid, np.clip((s[..., f] - lo) / (hi - lo), 0, 1), 0.0)
    return out.astype(np.float32)


def _grey(frame: UInt8[np.ndarray, "y x 3"]) -> Float[np.ndarray, "y x"]:
    return (np.asarray(frame, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255


def cluster_colours(cluster: Int[np.ndarray, "h w"], cmap) -> Float[np.ndarray, "h w 4"]:
    """RGBA colour per token from its cluster label (transparent for -1 / padding)."""
    rgba = np.asarray(cmap(np.mod(cluster, cmap.N)), np.float32)
    rgba[..., 3] = np.where(cluster >= 0, 0.7, 0.0)
    return rgba


def kept_overlay(keep: Bool[np.ndarray, "h w"]) -> Float[np.ndarray, "h w 4"]:
    """RGBA shade that darkens dropped tokens and leaves kept ones untouched."""
    rgba = np.zeros(keep.shape + (4,), np.float32)
    rgba[..., 3] = np.where(keep, 0.0, 0.78)
    return rgba


def tfs_figure(
    frames: UInt8[np.ndarray, "t y x 3"],
    saliency: Float[np.ndarray, "t h w 3"],
    cluster: Int[np.ndarray, "t h w"],
    keep_mask: Bool[np.ndarray, "t h w"],
    segment: Int[np.ndarray, "t"],
    *,
    valid: Bool[np.ndarray, "t h w"] | None = None,
    columns: int = 8,
    title: str | None = None,
    source_frames: Int[np.ndarray, "t"] | None = None,
):
    """The Figure-2 grid of one pruned video, each frame at its true aspect.

    A line under the title says which frames of how many the columns show (and, with
    `source_frames`, which frames of the source video they are).

    Args:
      frames: `(T, Y, X, 3)` uint8 RGB frames the tokens were computed from.
      saliency, cluster, keep_mask, segment: the `TFSResult` fields of the same video
        (numpy or JAX arrays), `(T, H, W, 3)`, `(T, H, W)`, `(T, H, W)`, `(T,)`.
      valid: `(T, H, W)` mask of real tokens (default all).
      columns: how many frames to show (evenly sampled, first and last included).
      title: figure title (a line about the clip and the budget).
      source_frames: `(T,)` index in the source video of each frame (`VideoRead`).
    Returns:
      A `matplotlib.figure.Figure` (save it with `fig.savefig(path)`).
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    frames, cluster = np.asarray(frames), np.asarray(cluster)
    keep, segment = np.asarray(keep_mask, bool), np.asarray(segment)
    t, y, x, _ = frames.shape
    if keep.shape[0] != t or saliency.shape[:3] != keep.shape:
        raise ValueError(f"frames {frames.shape} and token maps {keep.shape} disagree on T")
    norm = normalise_saliency(np.asarray(saliency), valid)
    cols = sample_columns(t, columns)
    extent = (0, x, y, 0)
    heat, labels = colormaps["inferno"], colormaps["tab20"]
    width, height = panel_size(y, x)
    fig = Figure(figsize=(width * len(cols) + 1.6, height * len(ROW_LABELS) + 1.0),
                 layout="constrained")
    axes = fig.subplots(len(ROW_LABELS), len(cols), squeeze=False)
    for j, f in enumerate(cols):
        grey = _grey(frames[f])
        axes[0, j].imshow(frames[f], extent=extent)
        for r in range(3):
            axes[1 + r, j].imshow(grey, cmap="gray", vmin=0, vmax=2.2, extent=extent)
            im = axes[1 + r, j].imshow(norm[f, ..., r], cmap=heat, vmin=0, vmax=1, alpha=0.85,
                                       interpolation="nearest", extent=extent)
        axes[4, j].imshow(grey, cmap="gray", vmin=0, vmax=1, extent=extent)
        axes[4, j].imshow(cluster_colours(cluster[f], labels), interpolation="nearest",
                          extent=extent)
        axes[5, j].imshow(frames[f], extent=extent)
        axes[5, j].imshow(kept_overlay(keep[f]), interpolation="nearest", extent=extent)
        axes[0, j].set_title(f"frame {f}{', ' if width >= 1.9 else chr(10)}segment "
                             f"{int(segment[f])}", fontsize=10)  # two lines on a narrow panel
        axes[5, j].set_xlabel(f"kept {int(keep[f].sum())}/{keep[f].size}", fontsize=10)
    for r, label in enumerate(ROW_LABELS):  # horizontal: a wide frame's short row fits it
        axes[r, 0].set_ylabel(label, fontsize=10, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1:4, -1], shrink=0.8, label="saliency (2-98% range over the video)")
    fig.suptitle("\n".join(filter(None, [title, shown_frames(cols, t, source_frames)])),
                 fontsize=12)
    return fig


def panel_size(y: int, x: int, *, area: float = 1.9**2, widest: float = 6.0) -> tuple[float, float]:
    """`(width, height)` in inches of one frame's panel: the frame's aspect, the area of a
    1.9-inch square, no wider than `widest` (a 1600 x 32 clip stays a strip, not a page)."""
    aspect = x / y
    width = min(widest, (area * aspect) ** 0.5)
    return width, max(width / aspect, 0.6)


def shown_frames(cols: np.ndarray, num_frames: int, source_frames=None) -> str:
    """`"frames 0, 5, 10, 15 of 16 shown"`, and their source frames when known.

    >>> shown_frames(np.array([0, 2]), 3, np.array([10, 20, 30]))
    'frames 0, 2 of 3 shown (source frames 10, 30)'
    """
    line = f"frames {', '.join(str(int(c)) for c in cols)} of {num_frames} shown"
    if source_frames is not None:
        line += f" (source frames {', '.join(str(int(source_frames[c])) for c in cols)})"
    return line
