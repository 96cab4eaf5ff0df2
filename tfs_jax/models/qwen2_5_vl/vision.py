"""Qwen2.5-VL's vision tower: patches in, merged LM-width embeddings out.

The tower (transformers 4.51.3 `Qwen2_5_VisionTransformerPretrainedModel`):

1. patch embedding: a Conv3d with kernel = stride = `(tp, p, p)` is one matmul of the
   processor's 1176-vector patches (`(C, tp, p, p)` flattened) with a `(1176, Dv)` kernel;
2. `depth` pre-norm blocks (RMSNorm, attention with 2-D rotary, RMSNorm, SwiGLU with bias);
   the blocks of `fullatt_block_indexes` attend within a frame (one temporal patch of one
   video), the others within Qwen's windows: `window_size / p / m` merged tokens a side
   (112 -> 4 x 4), cut from each frame's merged grid starting at its top-left corner, so
   the windows at the right and bottom edges are partial. Nothing attends across frames;
3. the `PatchMerger`: RMSNorm, then each `m x m` unit of consecutive patches (the
   processor orders a frame's patches unit by unit) through Linear-GELU-Linear.

transformers permutes the patches window by window, runs the blocks with block-diagonal
masks, merges, and undoes the permutation. Here the same permutation is an index array
computed in numpy from the static grid: `Segments.index` gathers every window's patches
into a padded row, attention runs row by row (padding masked), and `Segments.inverse`
scatters the rows back, so the merger sees the processor's order and no separate undo is
needed. Shapes depend only on the grid: one program serves every video of one size.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from tfs_jax.models.decoder import apply_rope
from tfs_jax.models.decoder import dense
from tfs_jax.models.decoder import rms_norm
from tfs_jax.models.qwen2_5_vl.config import VisionConfig

_EPS = 1e-6  # transformers hard-codes the vision RMSNorm epsilon


@dataclasses.dataclass(frozen=True)
class Segments:
    """Attention segments as padded rows of patch indices (numpy, from the static grid).

    Attributes:
      index: `(S, P)` int32 patch indices of each segment, padded with `N` (a zero row).
      valid: `(S, P)` bool real entries.
      inverse: `(N,)` int32 flat position `s * P + j` of every patch in `index`.
    """

    index: np.ndarray
    valid: np.ndarray
    inverse: np.ndarray


def segments_of(segment_id: Int[np.ndarray, "n"]) -> Segments:
    """Group patches by segment id into padded rows, processor order kept within a row."""
    n = segment_id.shape[0]
    order = np.argsort(segment_id, kind="stable")
    _, row_of_sorted, counts = np.unique(segment_id[order], return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col_of_sorted = np.arange(n) - starts[row_of_sorted]
    width = int(counts.max())
    index = np.full((len(counts), width), n, np.int32)
    index[row_of_sorted, col_of_sorted] = order
    inverse = np.empty(n, np.int32)
    inverse[order] = row_of_sorted * width + col_of_sorted
    return Segments(index=index, valid=index < n, inverse=inverse)


def patch_coords(grids, merge: int) -> Int[np.ndarray, "n 5"]:
    """`(video, t, h, w, merged token)` of every patch in the processor's order.

    Within a frame the processor orders patches by merged token `(h/m, w/m)` in raster
    order, then `(i, j)` inside the `m x m` unit: patch row `h = (h/m) * m + i`.
    """
    rows = []
    for v, (t, h, w) in enumerate(grids):
        tt, hb, wb, i, j = np.meshgrid(np.arange(t), np.arange(h // merge), np.arange(w // merge),
                                       np.arange(merge), np.arange(merge), indexing="ij")
        coords = [np.full(tt.size, v), tt.ravel(), (hb * merge + i).ravel(), (wb * merge + j).ravel()]
        rows.append(np.stack(coords, axis=-1))
    coords = np.concatenate(rows)
    return np.concatenate([coords, (np.arange(len(coords)) // merge ** 2)[:, None]], axis=-1)


def window_segments(grids, config: VisionConfig) -> Segments:
    """Qwen's windows: `window_tokens` merged tokens a side per frame, partial at the edges."""
    m, side = config.spatial_merge_size, config.window_tokens
    c = patch_coords(grids, m)
    ids = np.stack([c[:, 0], c[:, 1], c[:, 2] // m // side, c[:, 3] // m // side], axis=-1)
    return segments_of(np.unique(ids, axis=0, return_inverse=True)[1].reshape(-1))


def frame_segments(grids, config: VisionConfig) -> Segments:
    """Full attention: one segment per frame (temporal patch) of each video."""
    c = patch_coords(grids, config.spatial_merge_size)
    return segments_of(np.unique(c[:, :2], axis=0, return_inverse=True)[1].reshape(-1))


def rotary(grids, config: VisionConfig) -> tuple[Float[Array, "n e"], Float[Array, "n e"]]:
    """2-D rotary cos/sin: a head's first quarter of bands turns with the patch row, the
    second with the column (then both halves repeat, rotate-half layout); theta 10,000."""
    dim = config.head_dim // 2
    inv_freq = 1.0 / 10000.0 ** (np.arange(0, dim, 2, dtype=np.float32) / dim)
    c = patch_coords(grids, config.spatial_merge_size)
    angles = np.concatenate([np.outer(c[:, 2], inv_freq), np.outer(c[:, 3], inv_freq)], axis=-1)
    angles = jnp.asarray(np.concatenate([angles, angles], axis=-1), jnp.float32)
    return jnp.cos(angles), jnp.sin(angles)


def segment_attention(
    q: Float[Array, "n heads e"], k, v, index: Int[Array, "s p"], valid: Bool[Array, "s p"],
    inverse: Int[Array, "n"],
) -> Float[Array, "n heads e"]:
    """Attention within each segment: gather rows, mask padding keys, scatter back."""
    pad = lambda x: jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)])
    qs, ks, vs = (pad(x)[index] for x in (q, k, v))  # (s, p, heads, e)
    scores = jnp.einsum("sqhe,skhe->shqk", qs, ks, preferred_element_type=jnp.float32)
    scores = jnp.where(valid[:, None, None, :], scores / math.sqrt(q.shape[-1]), -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("shqk,skhe->sqhe", probs, vs, preferred_element_type=jnp.float32)
    return out.reshape(-1, *out.shape[2:])[inverse].astype(q.dtype)


def vision_block(p: dict, x: Float[Array, "n dv"], cos, sin, segments: tuple, *, config: VisionConfig):
    """One block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))` (SwiGLU with bias).

    `segments` is `(index, valid, inverse)` as jnp arrays: windows or frames.
    """
    n, heads = x.shape[0], config.num_heads
    h = rms_norm(x, p["norm1"]["scale"], eps=_EPS)
    q, k, v = jnp.moveaxis(dense(p["qkv"], h).reshape(n, 3, heads, -1), 1, 0)
    q = apply_rope(q.astype(jnp.float32), cos, sin).astype(x.dtype)
    k = apply_rope(k.astype(jnp.float32), cos, sin).astype(x.dtype)
    x = x + dense(p["proj"], segment_attention(q, k, v, *segments).reshape(n, -1))
    h = rms_norm(x, p["norm2"]["scale"], eps=_EPS)
    return x + dense(p["down_proj"], jax.nn.silu(dense(p["gate_proj"], h)) * dense(p["up_proj"], h))


def patch_merger(p: dict, x: Float[Array, "n dv"], *, config: VisionConfig) -> Float[Array, "n_merged d"]:
    """RMSNorm, then each `m x m` unit of consecutive patches through Linear-GELU-Linear."""
    units = rms_norm(x, p["ln_q"]["scale"], eps=_EPS).reshape(x.shape[0] // config.spatial_merge_size ** 2, -1)
    return dense(p["fc2"], jax.nn.gelu(dense(p["fc1"], units), approximate=False))


def check_grids(pixel_values, grid_thw, config: VisionConfig) -> tuple[tuple[int, int, int], ...]:
    """Host-side checks of `vision_tower`'s inputs; returns the grids as a static tuple."""
    rows = np.asarray(grid_thw)
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.shape[0] < 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"grid_thw must be (V >= 1, 3) integers, got {rows.dtype} {rows.shape}")
    m = config.spatial_merge_size
    if np.any(rows < 1) or np.any(rows[:, 1:] % m):
        raise ValueError(f"grid_thw rows {rows.tolist()} must be positive with h, w multiples of {m}")
    patches = int(np.sum(np.prod(rows, axis=1)))
    if tuple(np.shape(pixel_values)) != (patches, config.patch_dim):
        raise ValueError(f"pixel values must have shape ({patches}, {config.patch_dim}) for grid_thw "
                         f"{rows.tolist()}, got {tuple(np.shape(pixel_values))}")
    return tuple(tuple(int(g) for g in row) for row in rows)


def vision_tower(params: dict, pixel_values: Float[Array, "n patch"], grid_thw, *, config: VisionConfig,
                 hidden_states: bool = False):
    """Merged embeddings `(N / m^2, d)` of patches in the processor's order (float32 out).

    Args:
      params: the "visual" subtree (`tfs_jax.models.qwen2_5_vl.params`).
      pixel_values: `(N, C*tp*p*p)` patches; `grid_thw` their `(V, 3)` rows (host values).
      config: the tower (static).
      hidden_states: also return every block's output `(depth, N, Dv)`.
    """
    grids = check_grids(pixel_values, grid_thw, config)
    return _tower(params, jnp.asarray(pixel_values), grids=grids, config=config, hidden_states=hidden_states)


@functools.partial(jax.jit, static_argnames=("grids", "config", "hidden_states"))
def _tower(params, pixel_values, *, grids, config, hidden_states):
    dtype = params["patch_embed"]["kernel"].dtype
    x = dense(params["patch_embed"], pixel_values.astype(dtype))
    cos, sin = rotary(grids, config)
    windows, frames = (_as_jnp(s(grids, config)) for s in (window_segments, frame_segments))
    full = jnp.asarray(np.isin(np.arange(config.depth), config.fullatt_block_indexes))

    def step(h, args):
        p, is_full = args
        h = jax.lax.cond(is_full, lambda y: vision_block(p, y, cos, sin, frames, config=config),
                         lambda y: vision_block(p, y, cos, sin, windows, config=config), h)
        return h, (h if hidden_states else None)

    x, blocks = jax.lax.scan(step, x, (params["blocks"], full))
    merged = patch_merger(params["merger"], x, config=config).astype(jnp.float32)
    return (merged, blocks) if hidden_states else merged


def _as_jnp(segments: Segments) -> tuple[Array, Array, Array]:
    return jnp.asarray(segments.index), jnp.asarray(segments.valid), jnp.asarray(segments.inverse)
