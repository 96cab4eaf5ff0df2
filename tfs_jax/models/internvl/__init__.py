"""InternVL3 / 3.5 (`model_type` "internvl", transformers >= 4.52's `InternVLForConditionalGeneration`).

Modules: `config` (config.json), `params` (tensor names to the param pytree), `vision`
(InternViT, pixel shuffle, projector), `model` (`Model`: the stages, `forward`,
`generate`), `processor` (`preprocess_frames`, equal to `GotOcr2ImageProcessor` per frame).
The LM is the one decoder of `tfs_jax.models.decoder` configured as Qwen3.
"""

import importlib

from tfs_jax.models.internvl.config import InternVLConfig
from tfs_jax.models.internvl.config import VisionConfig
from tfs_jax.models.internvl.model import Model
from tfs_jax.models.internvl.params import canonical_name
from tfs_jax.models.internvl.params import convert
from tfs_jax.models.internvl.params import expected_tensors
from tfs_jax.models.internvl.params import stack_size
from tfs_jax.models.internvl.params import tree_slot

config_from_dict = InternVLConfig.from_dict

__all__ = ["InternVLConfig", "VisionConfig", "Model", "canonical_name", "convert", "expected_tensors",
           "stack_size", "tree_slot", "config_from_dict"]


def __getattr__(name: str):
    if name in ("preprocess_frames", "ProcessorConfig"):
        return getattr(importlib.import_module("tfs_jax.models.internvl.processor"), name)
    raise AttributeError(f"module 'tfs_jax.models.internvl' has no attribute {name!r}")
