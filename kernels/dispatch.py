"""Choosing an implementation of a neighbourhood op from the static `impl` argument.

- "auto": the Pallas kernels on a GPU backend, the `jnp` reference (written for XLA:CPU)
  everywhere else;
- "pallas": the Pallas (Triton) kernels, compiled; needs a GPU at run time, but lowers for
  `cuda` anywhere (`jax.jit(f).trace(...).lower(lowering_platforms=("cuda",))`);
- "interpret": the same kernels run by Pallas' interpreter on any backend (slow; tests);
- "reference": the plain `jnp` implementation.
"""

from __future__ import annotations

import jax

IMPLS = ("auto", "pallas", "interpret", "reference")


def check_impl(impl: str) -> str:
    """Raise a `ValueError` unless `impl` names an implementation."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} must be one of {IMPLS}")
    return impl


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for on the default backend: "pallas",
    "interpret" or "reference"."""
    check_impl(impl)
    if impl == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "reference"
    return impl
