"""What every model-parity test module shares: the largest-difference report, matmul
precision "highest", and the pinned transformers reference (skip without torch or
transformers, fail loudly on another version)."""

from __future__ import annotations

import jax
import pytest
from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)


def report(name: str, value: float) -> float:
    """Print one check's largest difference (`pytest -s` shows "MAXDIFF ..."); return it."""
    print(f"MAXDIFF {name}: {value:.3g}")
    return value


@pytest.fixture(autouse=True)
def highest_precision():
    """float32 matmuls in full precision (an autouse fixture: import it into the module)."""
    with jax.default_matmul_precision("highest"):
        yield


def require_torch(version: str, family: str):
    """`torch`, after checking transformers is `version` (the family's reference)."""
    torch = needs("torch", why=f"the {family} reference")
    needs("transformers", version=version, why=f"the {family} reference")
    return torch
