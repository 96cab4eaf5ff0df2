"""Qwen2.5-VL (Bai et al., 2025) in JAX: config, weight-name map, vision tower, `Model`.

Modules: `config` (`Qwen25VLConfig` from config.json), `params` (transformers' tensor names
to the param pytree), `vision` (the windowed ViT and its patch merger), `model` (`Model`:
the stages, `forward`, `generate`). The processor (`preprocess_video`) sits beside them.
"""

import importlib

from tfs_jax.models.qwen2_5_vl.config import Qwen25VLConfig
from tfs_jax.models.qwen2_5_vl.config import VisionConfig
from tfs_jax.models.lm import KVCache
from tfs_jax.models.qwen2_5_vl.model import Model
from tfs_jax.models.lm import Output
from tfs_jax.models.lm import Prompt
from tfs_jax.models.qwen2_5_vl.params import canonical_name
from tfs_jax.models.qwen2_5_vl.params import convert
from tfs_jax.models.qwen2_5_vl.params import expected_tensors
from tfs_jax.models.qwen2_5_vl.params import stack_size
from tfs_jax.models.qwen2_5_vl.params import tree_slot

config_from_dict = Qwen25VLConfig.from_dict

__all__ = [
    "Qwen25VLConfig",
    "VisionConfig",
    "Model",
    "Output",
    "Prompt",
    "KVCache",
    "canonical_name",
    "convert",
    "expected_tensors",
    "stack_size",
    "tree_slot",
    "config_from_dict",
]

# The processor (`processor.py`: resize, normalise, patchify) loads its image stack on first
# use: `qwen2_5_vl.preprocess_video` and `qwen2_5_vl.ProcessorConfig` are attributes here.
_PROCESSOR_NAMES = ("preprocess_video", "ProcessorConfig")


def __getattr__(name: str):
    if name in _PROCESSOR_NAMES:
        return getattr(importlib.import_module("tfs_jax.models.qwen2_5_vl.processor"), name)
    raise AttributeError(f"module 'tfs_jax.models.qwen2_5_vl' has no attribute {name!r}")
