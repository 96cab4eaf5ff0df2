"""LLaVA-OneVision (Li et al., 2024) in JAX: config, weight-name map, SigLIP tower, `Model`.

Modules: `config` (`LlavaOnevisionConfig` from config.json), `params` (transformers' tensor
names to the param pytree), `vision` (SigLIP, the projector, the 2x2 bilinear pooling),
`model` (`Model`: the stages, `forward`, `generate`), `processor` (`preprocess_video`:
frames to the tower's 384x384 input), `ask` (what `tfs-jax ask` calls).
"""

import importlib

from tfs_jax.models.llava_onevision.config import LlavaOnevisionConfig
from tfs_jax.models.llava_onevision.config import VisionConfig
from tfs_jax.models.llava_onevision.model import Model
from tfs_jax.models.llava_onevision.params import canonical_name
from tfs_jax.models.llava_onevision.params import convert
from tfs_jax.models.llava_onevision.params import expected_tensors
from tfs_jax.models.llava_onevision.params import stack_size
from tfs_jax.models.llava_onevision.params import tree_slot

config_from_dict = LlavaOnevisionConfig.from_dict

__all__ = [
    "LlavaOnevisionConfig",
    "VisionConfig",
    "Model",
    "canonical_name",
    "convert",
    "expected_tensors",
    "stack_size",
    "tree_slot",
    "config_from_dict",
]

# The processor (Pillow) loads on first use: `preprocess_video` and `ProcessorConfig`.
_PROCESSOR_NAMES = ("preprocess_video", "ProcessorConfig")


def __getattr__(name: str):
    if name in _PROCESSOR_NAMES:
        return getattr(importlib.import_module("tfs_jax.models.llava_onevision.processor"), name)
    raise AttributeError(f"module 'tfs_jax.models.llava_onevision' has no attribute {name!r}")
