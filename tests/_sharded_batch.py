"""Run by test_distributed.py in a subprocess with 8 forced CPU devices.

Prunes a batch of videos with `prune_batch` sharded over all devices, checks where the
result lives, and writes the results to the .npz path given as argv[1].
"""

import os
import sys

assert "xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", "")

import jax  # noqa: E402
import numpy as np  # noqa: E402

import tfs_jax  # noqa: E402
from tfs_jax.distributed import batch_mesh  # noqa: E402
from tfs_jax.distributed import prune_batch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_distributed import CFG, batch_videos  # noqa: E402

tokens, valid = batch_videos()
mesh = batch_mesh()
assert mesh.devices.size == 8, jax.devices()
result = prune_batch(tokens, CFG, valid=valid, key=jax.random.key(1), mesh=mesh)
# Every field is split over the 8 devices along the batch axis (5 real videos + 3 of padding
# were sharded; the result is sliced back to 5).
shard_devices = {d for d in result.keep_mask.sharding.device_set}
np.savez(sys.argv[1], num_devices=len(jax.devices()), result_devices=len(shard_devices),
         **{k: np.asarray(v) for k, v in vars(result).items()})
