"""Choosing an implementation of a neighbourhood op from the static `impl` argument.

- "xla": plain `jnp`, written to be fast on XLA:CPU; runs on every backend;
- "pallas": the Pallas (Triton) kernels, compiled; needs a GPU at run time, but lowers for
  `cuda` anywhere (`jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))`);
- "interpret": the same kernels run by Pallas' interpreter on any backend (slow; tests);
- "auto": "pallas" on a GPU platform listed in `ACCEPTED_PLATFORMS`, "xla" everywhere else.

The kernels use Pallas' Triton backend, which jax 0.11 deprecates (a `DeprecationWarning`
when a kernel is lowered for a GPU) but still ships. It is found by import, not by version:
on a jax without it, "pallas" and "interpret" raise a `ValueError` that says so, "auto" is
"xla", and everything else works.

Why "auto" is "xla" on an unlisted GPU: a lowering is not a run. Triton's own compile
(and ptxas) happens only on hardware, so a platform joins `ACCEPTED_PLATFORMS` only after
`python -m experiments.gpu_acceptance` has passed on it (results/gpu_acceptance.json
records the device, its compute capability and the jax version).
"""

from __future__ import annotations

import jax

from tfs_jax.checks import check_impl

try:
    from jax.experimental.pallas import triton as pltriton
except ImportError as err:  # deprecated since jax 0.11: a later jax may drop it
    pltriton = None
    _TRITON_MISSING = f"{type(err).__name__}: {err}"
else:
    _TRITON_MISSING = None

# (compute capability, jax version) pairs on which the hardware acceptance run of the
# Pallas kernels passed. Empty: no GPU has executed them yet.
ACCEPTED_PLATFORMS: frozenset[tuple[str, str]] = frozenset()


def pallas_available() -> bool:
    """Whether this jax has Pallas' Triton backend (`jax.experimental.pallas.triton`)."""
    return pltriton is not None


def require_pallas() -> None:
    """Raise a `ValueError` saying why the Pallas kernels cannot run with this jax."""
    if pltriton is None:
        raise ValueError(
            f"the Pallas kernels need jax.experimental.pallas.triton, which jax "
            f"{jax.__version__} does not have ({_TRITON_MISSING}); use impl='xla'"
        )


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
        accepted = pallas_available() and gpu_platform() in ACCEPTED_PLATFORMS
        return "pallas" if accepted else "xla"
    if impl != "xla":
        require_pallas()
    return impl
