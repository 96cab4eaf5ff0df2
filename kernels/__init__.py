"""Neighbourhood ops of the TFS-Pruner, imported as `tfs_jax.kernels`.

One module per op, each with its public wrapper and the plain `jnp` reference it must
match. `impl` picks the implementation (static): "auto" (the best one for the backend),
"reference" (plain jnp), "pallas" or "interpret" (the Pallas kernel, compiled or
interpreted).
"""

from tfs_jax.kernels.box_sum import box_sum
from tfs_jax.kernels.box_sum import box_sum_reference
from tfs_jax.kernels.dispatch import IMPLS
from tfs_jax.kernels.dispatch import check_impl
from tfs_jax.kernels.focal import focal_reconstruction
from tfs_jax.kernels.focal import focal_reconstruction_reference
from tfs_jax.kernels.motion_match import motion_match
from tfs_jax.kernels.motion_match import motion_match_reference
