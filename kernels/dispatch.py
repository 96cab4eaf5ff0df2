"""Choosing an implementation of a neighbourhood op from the static `impl` argument."""

from __future__ import annotations

IMPLS = ("auto", "pallas", "interpret", "reference")


def check_impl(impl: str) -> str:
    """Raise a `ValueError` unless `impl` names an implementation."""
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} must be one of {IMPLS}")
    return impl


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for on the default backend."""
    check_impl(impl)
    if impl in ("auto", "reference"):
        return "reference"
    raise NotImplementedError(f"impl={impl!r}: the Pallas kernels are not built yet")
