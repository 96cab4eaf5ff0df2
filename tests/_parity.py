"""What every model-parity test module shares: the largest-difference report, matmul
precision "highest", and the pinned transformers reference (skip without torch or
transformers, fail loudly on another version)."""

from __future__ import annotations

import jax
import pytest


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
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if transformers.__version__ != version:
        pytest.fail(f"the {family} reference is transformers {version}, found {transformers.__version__}")
    return torch
