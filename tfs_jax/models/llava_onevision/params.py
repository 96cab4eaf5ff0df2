"""LLaVA-OneVision's weight-name map: transformers' tensor names to this package's pytree.

The pytree (`Dv` SigLIP width, `P` its positions, `F` the projector's input width, `d` the
LM width):

    {"visual": {"patch_embed": {"kernel": (C*p*p, Dv), "bias": (Dv,)}, "position": (P, Dv),
                "layers": {...stacked (layers, ...): "norm1", "norm2" {"scale", "bias"},
                           "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"
                           {"kernel", "bias"}},
                "post_norm": {"scale", "bias"},     # loaded, unused: features are read
                "head": {...}},                     # before it; head only with vision_use_head
     "projector": {"linear_1": {"kernel": (F, d), "bias"?}, "linear_2": {"kernel": (d, d), "bias"?}},
     "newline": (d,),                               # `image_newline`
     "embed", "layers", "final_norm", "lm_head"?    # the Qwen2 LM (text_params)}

transformers stores a Linear's weight as `(out, in)`: it becomes a `(in, out)` kernel; the
patch Conv2d `(Dv, C, p, p)` becomes a `(C*p*p, Dv)` matmul kernel (the tower flattens a
patch in the same `(C, p, p)` order). Names are canonicalised to the 4.51.3 layout
(`language_model.` stripped, so the LM's names are Qwen2's); checkpoints written by
transformers >= 4.52 (`model.language_model.`, `model.vision_tower.`, ...) load too.
"""

from __future__ import annotations

import re

from tfs_jax.models.llava_onevision.config import LlavaOnevisionConfig
from tfs_jax.models.text_params import TEXT_RULES
from tfs_jax.models.text_params import convert  # noqa: F401  (the loader calls family.convert)
from tfs_jax.models.text_params import slot
from tfs_jax.models.text_params import text_tensors

_TOWER = r"vision_tower\.vision_model\."
_LAYER = _TOWER + r"encoder\.layers\.(\d+)\."
_RULES = TEXT_RULES + [
    (_TOWER + r"embeddings\.patch_embedding\.weight", ("visual", "patch_embed", "kernel"), "conv"),
    (_TOWER + r"embeddings\.patch_embedding\.bias", ("visual", "patch_embed", "bias"), "none"),
    (_TOWER + r"embeddings\.position_embedding\.weight", ("visual", "position"), "none"),
    (_LAYER + r"layer_norm([12])\.weight", ("visual", "layers", "norm{1}", "scale"), "none"),
    (_LAYER + r"layer_norm([12])\.bias", ("visual", "layers", "norm{1}", "bias"), "none"),
    (_LAYER + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.weight", ("visual", "layers", "{1}", "kernel"), "linear"),
    (_LAYER + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.bias", ("visual", "layers", "{1}", "bias"), "none"),
    (_LAYER + r"mlp\.(fc1|fc2)\.weight", ("visual", "layers", "{1}", "kernel"), "linear"),
    (_LAYER + r"mlp\.(fc1|fc2)\.bias", ("visual", "layers", "{1}", "bias"), "none"),
    (_TOWER + r"post_layernorm\.weight", ("visual", "post_norm", "scale"), "none"),
    (_TOWER + r"post_layernorm\.bias", ("visual", "post_norm", "bias"), "none"),
    (_TOWER + r"head\.(.+)", ("visual", "head", "{0}"), "none"),
    (r"multi_modal_projector\.(linear_[12])\.weight", ("projector", "{0}", "kernel"), "linear"),
    (r"multi_modal_projector\.(linear_[12])\.bias", ("projector", "{0}", "bias"), "none"),
    (r"image_newline", ("newline",), "none"),
]
_RULES = [(re.compile(pattern), path, how) for pattern, path, how in _RULES]


def canonical_name(name: str) -> str:
    """A tensor name in 4.51.3's layout with `language_model.` stripped (Qwen2's LM names);
    a transformers >= 4.52 name (`model.language_model.`, `model.<part>.`) is mapped first."""
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model."):
        rest = name[len("model."):]
        if rest.split(".")[0] in ("vision_tower", "multi_modal_projector", "image_newline"):
            return rest
    if name.startswith("language_model."):
        return name[len("language_model."):]
    return name


def expected_tensors(config: LlavaOnevisionConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name (canonical layout) a checkpoint of `config` holds, with its shape."""
    v, d = config.vision, config.text.hidden_size
    dv, inter = v.hidden_size, v.intermediate_size
    out = text_tensors(config.text, tie_word_embeddings=config.tie_word_embeddings)
    tower = "vision_tower.vision_model."
    out |= {tower + "embeddings.patch_embedding.weight": (dv, v.num_channels, v.patch_size, v.patch_size),
            tower + "embeddings.patch_embedding.bias": (dv,),
            tower + "embeddings.position_embedding.weight": (v.grid ** 2, dv),
            tower + "post_layernorm.weight": (dv,), tower + "post_layernorm.bias": (dv,)}
    layer = {"layer_norm1.weight": (dv,), "layer_norm1.bias": (dv,), "layer_norm2.weight": (dv,),
             "layer_norm2.bias": (dv,), "mlp.fc1.weight": (inter, dv), "mlp.fc1.bias": (inter,),
             "mlp.fc2.weight": (dv, inter), "mlp.fc2.bias": (dv,)}
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        layer |= {f"self_attn.{proj}.weight": (dv, dv), f"self_attn.{proj}.bias": (dv,)}
    for i in range(v.num_layers):
        out |= {f"{tower}encoder.layers.{i}.{k}": s for k, s in layer.items()}
    if v.use_head:
        head = {"probe": (1, 1, dv), "attention.in_proj_weight": (3 * dv, dv),
                "attention.in_proj_bias": (3 * dv,), "attention.out_proj.weight": (dv, dv),
                "attention.out_proj.bias": (dv,), "layernorm.weight": (dv,), "layernorm.bias": (dv,),
                "mlp.fc1.weight": (inter, dv), "mlp.fc1.bias": (inter,), "mlp.fc2.weight": (dv, inter),
                "mlp.fc2.bias": (dv,)}
        out |= {f"{tower}head.{k}": s for k, s in head.items()}
    out |= {"multi_modal_projector.linear_1.weight": (d, config.feature_width),
            "multi_modal_projector.linear_2.weight": (d, d), "image_newline": (d,)}
    if config.projector_bias:
        out |= {"multi_modal_projector.linear_1.bias": (d,), "multi_modal_projector.linear_2.bias": (d,)}
    return out


def tree_slot(name: str) -> tuple[tuple[str, ...], int | None, str]:
    """Where a (canonical) tensor goes: its pytree path, stacked index or None, transform."""
    return slot(_RULES, name, (("layers",), ("visual", "layers")), "LLaVA-OneVision")


def stack_size(config: LlavaOnevisionConfig, path: tuple[str, ...]) -> int:
    """Rows of the stacked leaf at `path`: LM layers or SigLIP layers."""
    return config.text.num_layers if path[0] == "layers" else config.vision.num_layers
