"""Pruning a batch of videos spread over devices with `jax.sharding`.

`prune_batch` vmaps `tfs_prune` over a leading batch axis and shards that axis over a 1-D
device mesh (`NamedSharding` with `PartitionSpec("batch")`, `jax.jit` with in/out
shardings): each device prunes its own videos, nothing crosses devices. Videos of different
lengths are padded in time with invalid frames (algorithm §10: padding is transparent); a batch
that does not divide by the device count is topped up with all-padding videos that are
dropped again from the result.

On a multi-GPU host the same call uses every visible GPU:

    mesh = tfs_jax.distributed.batch_mesh()          # all devices, axis "batch"
    result = tfs_jax.distributed.prune_batch(tokens, cfg, valid=valid, mesh=mesh)

On several hosts, every process joins first and then makes the same call with its own
videos (`B` each); one global mesh spans every process's devices:

    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    result = tfs_jax.distributed.prune_batch(local_tokens, cfg, valid=local_valid, key=key)

(JAX's CPU backend needs `jax.config.update("jax_cpu_collectives_implementation", "gloo")`
before `initialize` for the one collective used: checking that every process passes the
same number of videos.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
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
    """A 1-D mesh named "batch" over `devices` (default: every device of every process),
    ordered by process, so each process's devices hold one contiguous run of the batch."""
    devices = jax.devices() if devices is None else list(devices)
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
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

    With several processes (`jax.distributed.initialize`), each process passes its own
    videos and gets back the results of those videos; every process must pass the same
    number `B` of videos. Process `p`'s video `b` is video `p * B + b` of the global batch.

    Args:
      tokens: `(B, T, H, W, D)` this process's videos, of one shape (pad shorter ones in
        time).
      config: one `TFSConfig` for the whole batch.
      valid: `(B, T, H, W)` masks (default all valid).
      key: one key for the whole batch (default key(0)); global video `g` uses
        `fold_in(key, g)`, so the kept sets do not depend on how videos are spread over
        processes and devices. The key's impl is kept (an rbg key stays rbg); the per-video
        equality below holds for keys JAX vmaps exactly (threefry, the default): JAX draws
        a vmapped batch of rbg keys from its first key alone.
      mesh: a 1-D mesh with axis "batch" (default `batch_mesh()`: every device).
      impl: see `tfs_prune`.

    Returns:
      A `TFSResult` whose every field has a leading axis `B` (this process's videos), equal
      to `tfs_prune(tokens[b], config, valid=valid[b], key=fold_in(key, p * B + b))`.
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
    multi = jax.process_count() > 1
    # One process: keep everything on device (padding with numpy would copy the whole batch
    # to host and back). Several processes: host numpy, for make_array_from_process_local_data.
    xp = np if multi else jnp
    first = _same_batch_everywhere(batch) * jax.process_index()
    key = as_typed_key(key)
    key_impl = jax.random.key_impl(key)
    keys = jax.vmap(functools.partial(jax.random.fold_in, key))(first + jnp.arange(batch))
    tokens = xp.asarray(tokens)
    if tokens.dtype in (jnp.float16, jnp.bfloat16):
        tokens = tokens.astype(jnp.float32)
    inputs = (tokens, xp.ones(tokens.shape[:4], bool) if valid is None else xp.asarray(valid).astype(bool),
              xp.asarray(jax.random.key_data(keys)))
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    extra = -batch % local_devices
    if extra:  # top up with all-padding videos so the batch divides over the devices
        inputs = tuple(xp.concatenate([x, xp.zeros((extra,) + x.shape[1:], x.dtype)]) for x in inputs)
    sharding = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    if multi:
        size = (batch + extra) * jax.process_count()
        inputs = tuple(
            jax.make_array_from_process_local_data(sharding, x, (size,) + x.shape[1:]) for x in inputs
        )
    else:  # device to device: jit refuses an input committed to a device with another sharding
        inputs = tuple(jax.device_put(x, sharding) for x in inputs)
    result = _sharded_prune(sharding, impl, key_impl)(inputs[0], inputs[1], config, inputs[2])
    if multi:
        result = multihost_utils.global_array_to_host_local_array(
            result, mesh, PartitionSpec(BATCH_AXIS)
        )
    return jax.tree.map(lambda a: a[:batch], result) if extra else result


def _same_batch_everywhere(batch: int) -> int:
    """`batch`, after checking that every process passes that many videos."""
    if jax.process_count() > 1:
        sizes = multihost_utils.process_allgather(np.int32(batch))
        if len(set(np.asarray(sizes).tolist())) > 1:
            raise ValueError(f"every process must pass the same number of videos, got {sizes.tolist()}")
    return batch


@functools.lru_cache(maxsize=None)
def _sharded_prune(sharding: NamedSharding, impl: str, key_impl):
    """The vmapped pipeline jitted with its batch axis sharded as `sharding` (one per mesh,
    impl and PRNG key impl, so repeated calls reuse the compiled program). The keys travel
    as raw key data and are rewrapped with `key_impl`, the impl of the caller's key."""

    def run(tokens, valid, config, key_data):
        prune = functools.partial(tfs_prune, config=config, impl=impl)
        keys = jax.random.wrap_key_data(key_data, impl=key_impl)
        return jax.vmap(lambda x, m, k: prune(x, valid=m, key=k))(tokens, valid, keys)

    return jax.jit(run, in_shardings=(sharding, sharding, None, sharding), out_shardings=sharding)
