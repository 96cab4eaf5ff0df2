"""Tensor-name maps shared by the families: the Qwen2 LM's names (Qwen2.5-VL,
LLaVA-OneVision), transformers' 4.51 names (`model.layers.{i}....`, `lm_head.weight`) to
the one decoder's param pytree (`tfs_jax.models.decoder`'s layer layout, stacked), and the
rule lookup and layout conversion every family's `tree_slot` and `convert` use.

A family maps its own prefix onto these names first (its `canonical_name`).
"""

from __future__ import annotations

import numpy as np

from tfs_jax.models.decoder import DecoderConfig

# (pattern, tree path, transform); "{1}" in a path is the pattern's second group.
TEXT_RULES = [
    (r"model\.embed_tokens\.weight", ("embed",), "none"),
    (r"model\.norm\.weight", ("final_norm", "scale"), "none"),
    (r"lm_head\.weight", ("lm_head",), "none"),
    (r"model\.layers\.(\d+)\.input_layernorm\.weight", ("layers", "input_norm", "scale"), "none"),
    (r"model\.layers\.(\d+)\.post_attention_layernorm\.weight", ("layers", "post_attention_norm", "scale"), "none"),
    (r"model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight", ("layers", "self_attn", "{1}_proj", "kernel"), "linear"),
    (r"model\.layers\.(\d+)\.self_attn\.([qkv])_proj\.bias", ("layers", "self_attn", "{1}_proj", "bias"), "none"),
    (r"model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", ("layers", "{1}_proj", "kernel"), "linear"),
]


def text_tensors(t: DecoderConfig, *, tie_word_embeddings: bool) -> dict[str, tuple[int, ...]]:
    """Every LM tensor name (4.51 layout) with its shape; no `lm_head.weight` when tied."""
    e, d = t.head_dim, t.hidden_size
    out = {"model.embed_tokens.weight": (t.vocab_size, d), "model.norm.weight": (d,)}
    if not tie_word_embeddings:
        out["lm_head.weight"] = (t.vocab_size, d)
    for i in range(t.num_layers):
        pre = f"model.layers.{i}."
        out |= {pre + "input_layernorm.weight": (d,), pre + "post_attention_layernorm.weight": (d,)}
        for name, rows in (("q", t.num_heads * e), ("k", t.num_kv_heads * e), ("v", t.num_kv_heads * e)):
            out |= {pre + f"self_attn.{name}_proj.weight": (rows, d), pre + f"self_attn.{name}_proj.bias": (rows,)}
        out[pre + "self_attn.o_proj.weight"] = (d, t.num_heads * e)
        out |= {pre + "mlp.gate_proj.weight": (t.intermediate_size, d),
                pre + "mlp.up_proj.weight": (t.intermediate_size, d),
                pre + "mlp.down_proj.weight": (d, t.intermediate_size)}
    return out


def slot(rules, name: str, stacked: tuple[tuple[str, ...], ...], family: str):
    """`(path, index, transform)` of a canonical tensor name by the first matching rule of
    `rules` (compiled `(pattern, path, transform)`): "{k}" in a path is the pattern's group
    `k`; a path starting with one of `stacked` is a stacked leaf, indexed by group 0."""
    for pattern, path, how in rules:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        groups = match.groups()
        index = int(groups[0]) if any(path[:len(s)] == s for s in stacked) else None
        return tuple(part.format(*groups) for part in path), index, how
    raise ValueError(f"no place for tensor {name!r} in the {family} parameter tree")


def convert(array: np.ndarray, how: str) -> np.ndarray:
    """A transformers tensor in this package's layout: a Linear's `(out, in)` weight to an
    `(in, out)` kernel ("linear"), a convolution's `(out, ...)` weight to a `(prod(...), out)`
    matmul kernel ("conv"), anything else as it is."""
    if how == "linear":
        return array.T
    if how == "conv":
        return array.reshape(array.shape[0], -1).T
    return array
