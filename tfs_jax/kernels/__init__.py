"""Neighbourhood ops of the TFS-Pruner, imported as `tfs_jax.kernels`.

One module per op (`motion_match`, `box_sum`, `focal`), each with its Pallas (Triton)
kernel, the public op, the XLA path (`*_xla`, plain `jnp` written to be fast on XLA:CPU)
and, at the bottom, a short plain `*_reference` that tests hold both paths against. `impl` picks the
implementation (static): "xla" (plain `jnp`, written to be fast on XLA:CPU), "pallas" or
"interpret" (the Pallas kernel, compiled or interpreted), or "auto" ("xla" unless the
platform passed the hardware acceptance run). See `dispatch.py`.

The ops read raw tokens: whatever invalid tokens hold is ignored, and the caller passes the
mask and overflow scale of `tfs_jax.tokens.valid_and_scale` instead of a prepared copy.
"""

from tfs_jax.kernels.box_sum import box_sum
from tfs_jax.kernels.box_sum import box_sum_reference
from tfs_jax.kernels.box_sum import box_sum_xla
from tfs_jax.kernels.box_sum import window_contrast
from tfs_jax.kernels.box_sum import window_contrast_reference
from tfs_jax.kernels.box_sum import window_contrast_xla
from tfs_jax.kernels.dispatch import ACCEPTED_PLATFORMS
from tfs_jax.kernels.dispatch import resolve_impl
from tfs_jax.kernels.focal import focal_reconstruction
from tfs_jax.kernels.focal import focal_reconstruction_reference
from tfs_jax.kernels.focal import focal_reconstruction_xla
from tfs_jax.kernels.motion_match import motion_match
from tfs_jax.kernels.motion_match import motion_match_reference
from tfs_jax.kernels.motion_match import motion_match_xla
