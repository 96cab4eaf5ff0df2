"""Pruning a batch of videos spread over devices with `jax.sharding`.

`prune_batch` vmaps `tfs_prune` over a leading batch axis and shards that axis over a 1-D
device mesh (`NamedSharding` with `PartitionSpec("batch")`, `jax.jit` with in/out
shardings): each device prunes its own videos, nothing crosses devices. Videos of different
lengths are padded in time with invalid frames (SPEC 10: padding is transparent); a batch
that does not divide by the device count is topped up with all-padding videos that are
dropped again from the result.

On a multi-GPU host the same call uses every visible GPU:

    mesh = tfs_jax.distributed.batch_mesh()          # all devices, axis "batch"
    result = tfs_jax.distributed.prune_batch(tokens, cfg, valid=valid, mesh=mesh)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
from jaxtyping import Array, Bool, Shaped

from tfs_jax.checks import check_impl
from tfs_jax.checks import check_key
from tfs_jax.checks import check_tokens
from tfs_jax.config import TFSConfig
from tfs_jax.pipeline import TFSResult
from tfs_jax.pipeline import tfs_prune
from tfs_jax.tokens import as_typed_key

BATCH_AXIS = "batch"


def batch_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "batch" over `devices` (default: every device of the backend)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(devices), (BATCH_AXIS,))


def prune_batch(
    tokens: Shaped[Array, "b t h w d"],
    config: TFSConfig | None = None,
    *,
    valid: Bool[Array, "b t h w"] | None = None,
    key: Array | None = None,
    mesh: Mesh | None = None,
    impl: str = "auto",
) -> TFSResult:
    """`tfs_prune` on every video of a batch, the batch sharded over `mesh`'s devices.

    Args:
      tokens: `(B, T, H, W, D)` videos of one shape (pad shorter ones in time).
      config: one `TFSConfig` for the whole batch.
      valid: `(B, T, H, W)` masks (default all valid).
      key: one key, split per video (video `b` uses `fold_in(key, b)`), default key(0).
      mesh: a 1-D mesh with axis "batch" (default `batch_mesh()`).
      impl: see `tfs_prune`.

    Returns:
      A `TFSResult` whose every field has a leading batch axis `B`, equal to running
      `tfs_prune(tokens[b], config, valid=valid[b], key=fold_in(key, b))` per video.
    """
    config = TFSConfig() if config is None else config
    if getattr(tokens, "ndim", None) != 5:
        raise ValueError(f"tokens must have shape (B, T, H, W, D), got {getattr(tokens, 'shape', None)}")
    batch = tokens.shape[0]
    check_tokens(tokens[0], None if valid is None else valid[0])
    if valid is not None and tuple(valid.shape) != tuple(tokens.shape[:4]):
        raise ValueError(f"valid must have shape {tuple(tokens.shape[:4])}, got {tuple(valid.shape)}")
    check_key(key)
    check_impl(impl)
    mesh = batch_mesh() if mesh is None else mesh
    if BATCH_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have an axis named {BATCH_AXIS!r}, got {mesh.axis_names}")
    keys = jax.vmap(functools.partial(jax.random.fold_in, as_typed_key(key)))(jnp.arange(batch))
    valid = jnp.ones(tokens.shape[:4], bool) if valid is None else jnp.asarray(valid).astype(bool)
    tokens = jnp.asarray(tokens)
    if tokens.dtype in (jnp.float16, jnp.bfloat16):
        tokens = tokens.astype(jnp.float32)
    extra = -batch % mesh.shape[BATCH_AXIS]
    if extra:  # top up with all-padding videos so the batch divides over the devices
        tokens = jnp.concatenate([tokens, jnp.zeros((extra,) + tokens.shape[1:], tokens.dtype)])
        valid = jnp.concatenate([valid, jnp.zeros((extra,) + valid.shape[1:], bool)])
        keys = jnp.concatenate([keys, keys[:extra]])
    result = _sharded_prune(mesh, impl)(tokens, valid, config, keys)
    return jax.tree.map(lambda a: a[:batch], result) if extra else result


@functools.lru_cache(maxsize=None)
def _sharded_prune(mesh: Mesh, impl: str):
    """The vmapped pipeline jitted with its batch axis sharded over `mesh` (one per mesh
    and impl, so repeated calls reuse the compiled program)."""
    sharded = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))

    def run(tokens, valid, config, keys):
        prune = functools.partial(tfs_prune, config=config, impl=impl)
        return jax.vmap(lambda x, m, k: prune(x, valid=m, key=k))(tokens, valid, keys)

    return jax.jit(run, in_shardings=(sharded, sharded, None, sharded), out_shardings=sharded)
