"""Qwen2.5-VL's weight-name map: transformers' tensor names to this package's param pytree.

The pytree (`e` head dims, `Dv` vision width, `d` LM width, `m` merge size):

    {"visual": {"patch_embed": {"kernel": (1176, Dv)},
                "blocks": {...stacked (depth, ...): "norm1", "norm2" {"scale"},
                           "qkv", "proj", "gate_proj", "up_proj", "down_proj" {"kernel", "bias"}},
                "merger": {"ln_q": {"scale"}, "fc1": {"kernel": (m²Dv, m²Dv), "bias"},
                           "fc2": {"kernel": (m²Dv, d), "bias"}}},
     "embed": (V, d), "layers": {...the one decoder's layer, stacked}, "final_norm": {"scale"},
     "lm_head": (V, d)   # only when tie_word_embeddings is false}

transformers stores a Linear's weight as `(out, in)`: it becomes a `(in, out)` kernel; the
Conv3d patch embedding `(Dv, C, tp, p, p)` becomes a `(C*tp*p*p, Dv)` matmul kernel (the
processor flattens a patch in the same `(C, tp, p, p)` order). Checkpoints written by
transformers >= 4.52 prefix `model.language_model.` and `model.visual.`; both layouts load.
"""

from __future__ import annotations

import re

from tfs_jax.models.qwen2_5_vl.config import Qwen25VLConfig
from tfs_jax.models.text_params import TEXT_RULES
from tfs_jax.models.text_params import convert  # noqa: F401  (the loader calls family.convert)
from tfs_jax.models.text_params import slot
from tfs_jax.models.text_params import text_tensors

# (pattern, tree path, transform): the Qwen2 LM's (text_params), then the vision tower's.
_RULES = TEXT_RULES + [
    (r"visual\.patch_embed\.proj\.weight", ("visual", "patch_embed", "kernel"), "conv"),
    (r"visual\.blocks\.(\d+)\.norm([12])\.weight", ("visual", "blocks", "norm{1}", "scale"), "none"),
    (r"visual\.blocks\.(\d+)\.attn\.(qkv|proj)\.weight", ("visual", "blocks", "{1}", "kernel"), "linear"),
    (r"visual\.blocks\.(\d+)\.attn\.(qkv|proj)\.bias", ("visual", "blocks", "{1}", "bias"), "none"),
    (r"visual\.blocks\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", ("visual", "blocks", "{1}_proj", "kernel"), "linear"),
    (r"visual\.blocks\.(\d+)\.mlp\.(gate|up|down)_proj\.bias", ("visual", "blocks", "{1}_proj", "bias"), "none"),
    (r"visual\.merger\.ln_q\.weight", ("visual", "merger", "ln_q", "scale"), "none"),
    (r"visual\.merger\.mlp\.0\.weight", ("visual", "merger", "fc1", "kernel"), "linear"),
    (r"visual\.merger\.mlp\.0\.bias", ("visual", "merger", "fc1", "bias"), "none"),
    (r"visual\.merger\.mlp\.2\.weight", ("visual", "merger", "fc2", "kernel"), "linear"),
    (r"visual\.merger\.mlp\.2\.bias", ("visual", "merger", "fc2", "bias"), "none"),
]
_RULES = [(re.compile(pattern), path, how) for pattern, path, how in _RULES]


def canonical_name(name: str) -> str:
    """A transformers >= 4.52 tensor name in 4.51's layout (`model.`, `visual.`)."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


def expected_tensors(config: Qwen25VLConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name (4.51 layout) a checkpoint of `config` holds, with its shape."""
    t, v = config.text, config.vision
    dv = v.hidden_size
    merged = dv * v.spatial_merge_size ** 2
    out = text_tensors(t, tie_word_embeddings=config.tie_word_embeddings)
    p = v.patch_size
    out["visual.patch_embed.proj.weight"] = (dv, v.in_channels, v.temporal_patch_size, p, p)
    for i in range(v.depth):
        pre = f"visual.blocks.{i}."
        shapes = {"norm1.weight": (dv,), "norm2.weight": (dv,), "attn.qkv.weight": (3 * dv, dv),
                  "attn.qkv.bias": (3 * dv,), "attn.proj.weight": (dv, dv), "attn.proj.bias": (dv,),
                  "mlp.gate_proj.weight": (v.intermediate_size, dv), "mlp.gate_proj.bias": (v.intermediate_size,),
                  "mlp.up_proj.weight": (v.intermediate_size, dv), "mlp.up_proj.bias": (v.intermediate_size,),
                  "mlp.down_proj.weight": (dv, v.intermediate_size), "mlp.down_proj.bias": (dv,)}
        out |= {pre + k: s for k, s in shapes.items()}
    out |= {"visual.merger.ln_q.weight": (dv,), "visual.merger.mlp.0.weight": (merged, merged),
            "visual.merger.mlp.0.bias": (merged,), "visual.merger.mlp.2.weight": (t.hidden_size, merged),
            "visual.merger.mlp.2.bias": (t.hidden_size,)}
    return out


def tree_slot(name: str) -> tuple[tuple[str, ...], int | None, str]:
    """Where a (canonical) tensor goes: its pytree path, stacked index or None, transform."""
    return slot(_RULES, name, (("layers",), ("visual", "blocks")), "Qwen2.5-VL")


def stack_size(config: Qwen25VLConfig, path: tuple[str, ...]) -> int:
    """Rows of the stacked leaf at `path`: LM layers or vision blocks."""
    return config.text.num_layers if path[0] == "layers" else config.vision.depth
