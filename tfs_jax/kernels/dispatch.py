"""Choosing an implementation of a neighbourhood op from the static `impl` argument.

- "xla": plain `jnp`, written to be fast on XLA:CPU; runs on every backend;
- "pallas": the Pallas (Triton) kernels, compiled; needs a GPU at run time, but lowers for
  `cuda` anywhere (`jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))`);
- "interpret": the same kernels run by Pallas' interpreter on any backend (slow; tests);
- "auto": "pallas" on a GPU platform listed in `ACCEPTED_PLATFORMS`, "xla" everywhere else.

Why "auto" is "xla" on an unlisted GPU: a lowering is not a run. Triton's own compile
(and ptxas) happens only on hardware, so a platform joins `ACCEPTED_PLATFORMS` only after
`python -m experiments.gpu_acceptance` has passed on it (results/gpu_acceptance.json
records the device, its compute capability and the jax version).
"""

from __future__ import annotations

import jax

from tfs_jax.checks import check_impl

# (compute capability, jax version) pairs on which the hardware acceptance run of the
# Pallas kernels passed. Empty: no GPU has executed them yet.
ACCEPTED_PLATFORMS: frozenset[tuple[str, str]] = frozenset()


def gpu_platform() -> tuple[str, str] | None:
    """`(compute capability, jax version)` of the default device if it is a GPU, else None."""
    device = jax.devices()[0]
    if device.platform != "gpu":
        return None
    return str(getattr(device, "compute_capability", "unknown")), jax.__version__


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for here: "xla", "pallas" or "interpret"."""
    check_impl(impl)
    if impl == "auto":
        return "pallas" if gpu_platform() in ACCEPTED_PLATFORMS else "xla"
    return impl
