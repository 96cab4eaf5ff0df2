"""Run twice by test_distributed.py, as process 0 and 1 of a two-process JAX job on
loopback (argv: process id, coordinator port, output .npz). Each process prunes its own
three videos through `prune_batch` over one global mesh of both processes' devices (two
forced CPU devices each, so three videos are topped up to four) and writes its results."""

import os
import sys

# Same XLA flags as the test process (its optimisation level), plus two CPU devices.
os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
process_id, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                           initialization_timeout=120)

import numpy as np  # noqa: E402

from tfs_jax.distributed import batch_mesh  # noqa: E402
from tfs_jax.distributed import prune_batch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_distributed import CFG, batch_videos  # noqa: E402

tokens, valid = batch_videos(batch=6)
mine = slice(3 * process_id, 3 * process_id + 3)
mesh = batch_mesh()
assert mesh.devices.size == 4 and jax.process_count() == 2, jax.devices()
result = prune_batch(tokens[mine], CFG, valid=valid[mine], key=jax.random.key(1), mesh=mesh)
np.savez(out, **{k: np.asarray(v) for k, v in vars(result).items()})
jax.distributed.shutdown()
