"""InternVL's weight-name map: transformers' tensor names to this package's param pytree.

The pytree (`Dv` vision width, `d` LM width, `p` patch side, `C` channels):

    {"visual": {"patch_embed": {"kernel": (C*p*p, Dv), "bias"}, "cls": (Dv,), "pos": (1+N, Dv),
                "blocks": {...stacked (depth, ...): "norm1", "norm2" {"scale", "bias"?},
                           "q_proj", "k_proj", "v_proj" {"kernel", "bias"?}, "q_norm", "k_norm"
                           {"scale"}?, "proj", "fc1", "fc2" {"kernel", "bias"}, "lambda_1",
                           "lambda_2" (Dv,)},
                "final_norm": {"scale", "bias"}?},
     "projector": {"norm": {"scale", "bias"}, "fc1", "fc2": {"kernel", "bias"}},
     "embed": (V, d), "layers": {...the one decoder's layer (qk_norm)}, "final_norm": {"scale"},
     "lm_head": (V, d)   # only when untied}

`save_pretrained` in 4.52 writes the legacy names (`language_model.model.`, `vision_tower.`,
`multi_modal_projector.`, `language_model.lm_head.`); the hub's converted checkpoints use
`model.language_model.`, `model.vision_tower.`, `model.multi_modal_projector.`, `lm_head.`.
Both load: `canonical_name` maps onto the legacy names, but for the head, which is
`lm_head.weight` (the name the loader drops when a tied checkpoint stores it anyway).
"""

from __future__ import annotations

import re

import numpy as np

from tfs_jax.models.internvl.config import InternVLConfig

_LM = r"language_model\.model\."
_VB = r"vision_tower\.encoder\.layer\.(\d+)\."
_RULES = [
    (_LM + r"embed_tokens\.weight", ("embed",), "none"),
    (_LM + r"norm\.weight", ("final_norm", "scale"), "none"),
    (r"lm_head\.weight", ("lm_head",), "none"),
    (_LM + r"layers\.(\d+)\.input_layernorm\.weight", ("layers", "input_norm", "scale"), "none"),
    (_LM + r"layers\.(\d+)\.post_attention_layernorm\.weight", ("layers", "post_attention_norm", "scale"), "none"),
    (_LM + r"layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight", ("layers", "self_attn", "{1}_proj", "kernel"), "linear"),
    (_LM + r"layers\.(\d+)\.self_attn\.([qk])_norm\.weight", ("layers", "self_attn", "{1}_norm", "scale"), "none"),
    (_LM + r"layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", ("layers", "{1}_proj", "kernel"), "linear"),
    (r"vision_tower\.embeddings\.cls_token", ("visual", "cls"), "flat"),
    (r"vision_tower\.embeddings\.position_embeddings", ("visual", "pos"), "flat"),
    (r"vision_tower\.embeddings\.patch_embeddings\.projection\.weight", ("visual", "patch_embed", "kernel"), "conv"),
    (r"vision_tower\.embeddings\.patch_embeddings\.projection\.bias", ("visual", "patch_embed", "bias"), "none"),
    (_VB + r"attention\.([qkv])_proj\.(weight|bias)", ("visual", "blocks", "{1}_proj", "{2}"), "auto"),
    (_VB + r"attention\.([qk])_norm\.weight", ("visual", "blocks", "{1}_norm", "scale"), "none"),
    (_VB + r"attention\.projection_layer\.(weight|bias)", ("visual", "blocks", "proj", "{1}"), "auto"),
    (_VB + r"mlp\.(fc[12])\.(weight|bias)", ("visual", "blocks", "{1}", "{2}"), "auto"),
    (_VB + r"layernorm_before\.(weight|bias)", ("visual", "blocks", "norm1", "{1}"), "norm"),
    (_VB + r"layernorm_after\.(weight|bias)", ("visual", "blocks", "norm2", "{1}"), "norm"),
    (_VB + r"(lambda_[12])", ("visual", "blocks", "{1}"), "none"),
    (r"vision_tower\.layernorm\.(weight|bias)", ("visual", "final_norm", "{0}"), "norm"),
    (r"multi_modal_projector\.layer_norm\.(weight|bias)", ("projector", "norm", "{0}"), "norm"),
    (r"multi_modal_projector\.linear_([12])\.(weight|bias)", ("projector", "fc{0}", "{1}"), "auto"),
]
_RULES = [(re.compile(pattern), path, how) for pattern, path, how in _RULES]


def canonical_name(name: str) -> str:
    """A hub-layout tensor name in `save_pretrained`'s (legacy) layout."""
    for new, old in (("model.language_model.", "language_model.model."), ("language_model.lm_head.", "lm_head."),
                     ("model.vision_tower.", "vision_tower."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")):
        if name.startswith(new):
            return old + name[len(new):]
    return name


def _linear(prefix: str, fan_in: int, fan_out: int, bias: bool = True) -> dict:
    return {prefix + ".weight": (fan_out, fan_in), **({prefix + ".bias": (fan_out,)} if bias else {})}


def _norm(prefix: str, width: int, bias: bool) -> dict:
    return {prefix + ".weight": (width,), **({prefix + ".bias": (width,)} if bias else {})}


def _vision_tensors(v) -> dict[str, tuple[int, ...]]:
    dv, ln = v.hidden_size, v.norm_type == "layer_norm"
    out = {"vision_tower.embeddings.cls_token": (1, 1, dv),
           "vision_tower.embeddings.position_embeddings": (1, v.grid ** 2 + 1, dv),
           "vision_tower.embeddings.patch_embeddings.projection.weight": (dv, v.num_channels, v.patch_size, v.patch_size),
           "vision_tower.embeddings.patch_embeddings.projection.bias": (dv,)}
    for i in range(v.depth):
        pre = f"vision_tower.encoder.layer.{i}."
        for name in "qkv":
            out |= _linear(pre + f"attention.{name}_proj", dv, dv, v.attention_bias)
        if v.qk_norm:
            out |= {pre + "attention.q_norm.weight": (dv,), pre + "attention.k_norm.weight": (dv,)}
        out |= _linear(pre + "attention.projection_layer", dv, dv)
        out |= _linear(pre + "mlp.fc1", dv, v.intermediate_size) | _linear(pre + "mlp.fc2", v.intermediate_size, dv)
        out |= _norm(pre + "layernorm_before", dv, ln) | _norm(pre + "layernorm_after", dv, ln)
        out |= {pre + "lambda_1": (dv,), pre + "lambda_2": (dv,)}
    if v.final_norm:
        out |= _norm("vision_tower.layernorm", dv, True)
    return out


def expected_tensors(config: InternVLConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name (save_pretrained layout) a checkpoint of `config` holds, with its shape."""
    t, v = config.text, config.vision
    e, d, shuffled = t.head_dim, t.hidden_size, 4 * v.hidden_size
    out = {"language_model.model.embed_tokens.weight": (t.vocab_size, d), "language_model.model.norm.weight": (d,)}
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = (t.vocab_size, d)
    for i in range(t.num_layers):
        pre = f"language_model.model.layers.{i}."
        out |= _norm(pre + "input_layernorm", d, False) | _norm(pre + "post_attention_layernorm", d, False)
        for name, rows in (("q", t.num_heads * e), ("k", t.num_kv_heads * e), ("v", t.num_kv_heads * e)):
            out |= _linear(pre + f"self_attn.{name}_proj", d, rows, False)
        out |= _linear(pre + "self_attn.o_proj", t.num_heads * e, d, False)
        out |= {pre + "self_attn.q_norm.weight": (e,), pre + "self_attn.k_norm.weight": (e,)}
        out |= (_linear(pre + "mlp.gate_proj", d, t.intermediate_size, False)
                | _linear(pre + "mlp.up_proj", d, t.intermediate_size, False)
                | _linear(pre + "mlp.down_proj", t.intermediate_size, d, False))
    out |= _vision_tensors(v)
    out |= (_norm("multi_modal_projector.layer_norm", shuffled, True)
            | _linear("multi_modal_projector.linear_1", shuffled, d) | _linear("multi_modal_projector.linear_2", d, d))
    return out


def tree_slot(name: str) -> tuple[tuple[str, ...], int | None, str]:
    """Where a (save_pretrained-layout) tensor goes: pytree path, stacked index or None, transform."""
    for pattern, path, how in _RULES:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        groups = match.groups()
        stacked = path[0] == "layers" or path[:2] == ("visual", "blocks")
        index = int(groups[0]) if stacked else None
        parts = tuple(part.format(*groups) for part in path)
        if how in ("auto", "norm"):  # the last part is "weight" or "bias"
            weight = parts[-1] == "weight"
            leaf = ("kernel" if how == "auto" else "scale") if weight else "bias"
            parts, how = parts[:-1] + (leaf,), "linear" if how == "auto" and weight else "none"
        return parts, index, how
    raise ValueError(f"no place for tensor {name!r} in the InternVL parameter tree")


def convert(array: np.ndarray, how: str) -> np.ndarray:
    """A transformers tensor in this package's layout: Linear `(out, in)` to `(in, out)`, the
    Conv2d patch embedding `(Dv, C, p, p)` to a `(C*p*p, Dv)` matmul kernel, the class token
    `(1, 1, Dv)` to `(Dv,)` and position embeddings `(1, 1+N, Dv)` to `(1+N, Dv)`."""
    if how == "linear":
        return array.T
    if how == "conv":
        return array.reshape(array.shape[0], -1).T
    if how == "flat":
        return array.reshape(array.shape[-2:]) if array.shape[1] > 1 else array.reshape(-1)
    return array


def stack_size(config: InternVLConfig, path: tuple[str, ...]) -> int:
    """Rows of the stacked leaf at `path`: LM layers or vision blocks."""
    return config.text.num_layers if path[0] == "layers" else config.vision.depth
