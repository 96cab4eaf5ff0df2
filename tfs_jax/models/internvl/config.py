"""InternVL3 / 3.5's static configuration (transformers' `InternVLConfig`, 4.52 layout).

`vision_config` is InternViT (`InternVLVisionConfig`), `text_config` a Qwen3 LM, read as the
one decoder's `DecoderConfig` (per-head q/k RMSNorm, no q/k/v bias, 1-D RoPE, `head_dim`).
"""

from __future__ import annotations

import dataclasses

from tfs_jax.checks import check_count
from tfs_jax.models.decoder import DecoderConfig

# transformers 4.52.4's InternVLVisionConfig defaults, for keys a config.json leaves out.
_VISION_DEFAULTS = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, attention_bias=False,
                        use_qk_norm=False, intermediate_size=4096, hidden_act="gelu", norm_type="layer_norm",
                        layer_norm_eps=1e-6, image_size=448, patch_size=14, num_channels=3,
                        use_absolute_position_embeddings=True, use_mean_pooling=True)
NORM_TYPES = ("layer_norm", "rms_norm")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """InternViT's sizes and variants (static, hashable).

    Attributes:
      depth, hidden_size, intermediate_size, num_heads: the ViT.
      image_size, patch_size, num_channels: a square tile of `image_size` pixels is
        `(image_size / patch_size)^2` patches, plus a class token.
      norm_type: "layer_norm" (with bias) or "rms_norm" (InternViT-6B), eps `norm_eps`.
      qk_norm: RMSNorm over the whole projected q and k (not per head).
      attention_bias: q/k/v projections carry biases.
      final_norm: the tower's closing LayerNorm (`use_mean_pooling=False`).
    """

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    image_size: int
    patch_size: int
    num_channels: int
    norm_type: str
    norm_eps: float
    qk_norm: bool
    attention_bias: bool
    final_norm: bool

    def __post_init__(self):
        for name in ("depth", "hidden_size", "intermediate_size", "num_heads", "image_size",
                     "patch_size", "num_channels"):
            check_count(f"vision_config.{name}", getattr(self, name), 1)
        if self.norm_type not in NORM_TYPES:
            raise ValueError(f"vision_config.norm_type={self.norm_type!r} must be one of {NORM_TYPES}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision_config.hidden_size={self.hidden_size} must be a multiple of "
                             f"num_attention_heads={self.num_heads}")
        if self.image_size % (2 * self.patch_size):
            raise ValueError(f"vision_config.image_size={self.image_size} must be a multiple of "
                             f"2 * patch_size = {2 * self.patch_size} (pixel shuffle at 0.5)")

    @property
    def grid(self) -> int:
        """Patches per side of a tile."""
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class InternVLConfig:
    """An InternVL checkpoint's configuration (static, hashable).

    Attributes:
      text: the Qwen3 LM as the one decoder's `DecoderConfig` (1-D RoPE, qk_norm).
      vision: InternViT.
      image_token_id: the `<IMG_CONTEXT>` id every frame's tokens take.
      vision_feature_layer: which hidden state of the tower feeds the projector (-1: the last,
        after the final norm if any; else `hidden_states[layer]`, the input of that layer).
      tie_word_embeddings, torch_dtype, model_type: as in `Qwen25VLConfig`.
    """

    text: DecoderConfig
    vision: VisionConfig
    image_token_id: int
    vision_feature_layer: int
    tie_word_embeddings: bool
    torch_dtype: str | None = None
    model_type: str = "internvl"

    @property
    def tokens_per_tile(self) -> int:
        """LM tokens a 448-px tile becomes: `(grid / 2)^2` (256 for InternVL3.5)."""
        return (self.vision.grid // 2) ** 2

    @property
    def feature_depth(self) -> int:
        """ViT layers run to reach the feature layer."""
        layer = self.vision_feature_layer
        return self.vision.depth if layer == -1 else layer % (self.vision.depth + 1)

    @classmethod
    def from_dict(cls, raw: dict) -> InternVLConfig:
        """From a parsed `config.json`; a missing or unsupported field raises `ValueError`."""
        text, vision = raw.get("text_config") or {}, {**_VISION_DEFAULTS, **(raw.get("vision_config") or {})}
        _refuse(raw, text, vision)
        try:
            decoder = DecoderConfig(
                vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
                num_layers=text["num_hidden_layers"], num_heads=text["num_attention_heads"],
                num_kv_heads=text.get("num_key_value_heads") or text["num_attention_heads"],
                intermediate_size=text["intermediate_size"], rope_theta=float(text.get("rope_theta", 10000.0)),
                mrope_section=None, rms_eps=float(text.get("rms_norm_eps", 1e-6)), qkv_bias=False,
                qk_norm=True, head_size=text.get("head_dim"))
            side = lambda v: int(v[0] if isinstance(v, (list, tuple)) else v)
            tower = VisionConfig(
                depth=vision["num_hidden_layers"], hidden_size=vision["hidden_size"],
                intermediate_size=vision["intermediate_size"], num_heads=vision["num_attention_heads"],
                image_size=side(vision["image_size"]), patch_size=side(vision["patch_size"]),
                num_channels=vision["num_channels"], norm_type=vision["norm_type"],
                norm_eps=float(vision["layer_norm_eps"]), qk_norm=bool(vision["use_qk_norm"]),
                attention_bias=bool(vision["attention_bias"]), final_norm=not vision["use_mean_pooling"])
            layer = int(raw.get("vision_feature_layer", -1))
            if not -tower.depth - 1 <= layer <= tower.depth:
                raise ValueError(f"vision_feature_layer={layer} is outside the tower's {tower.depth} layers")
            tied = text.get("tie_word_embeddings", raw.get("tie_word_embeddings", False))
            return cls(text=decoder, vision=tower, image_token_id=int(raw.get("image_token_id", 151667)),
                       vision_feature_layer=layer, tie_word_embeddings=bool(tied),
                       torch_dtype=str(raw["torch_dtype"]) if raw.get("torch_dtype") else None)
        except KeyError as missing:
            raise ValueError(f"config.json lacks the field {missing.args[0]!r}") from None
        except TypeError as bad:
            raise ValueError(f"config.json: {bad}") from None


def _refuse(raw: dict, text: dict, vision: dict) -> None:
    """What this implementation does not cover raises, naming the field."""
    checks = [
        (text.get("model_type", "qwen3") == "qwen3", f"text_config.model_type={text.get('model_type')!r}: only 'qwen3' is supported"),
        (not text.get("attention_bias", False), "text_config.attention_bias=true: Qwen3 has no q/k/v bias"),
        (not text.get("rope_scaling"), f"text_config.rope_scaling={text.get('rope_scaling')!r}: only plain RoPE is supported"),
        (not text.get("use_sliding_window", False), "text_config.use_sliding_window=true is not implemented"),
        (text.get("hidden_act", "silu") == "silu", f"text_config.hidden_act={text.get('hidden_act')!r}: only 'silu' is supported"),
        (vision["hidden_act"] == "gelu", f"vision_config.hidden_act={vision['hidden_act']!r}: only 'gelu' is supported"),
        (raw.get("projector_hidden_act", "gelu") == "gelu", "projector_hidden_act: only 'gelu' is supported"),
        (float(raw.get("downsample_ratio", 0.5)) == 0.5, f"downsample_ratio={raw.get('downsample_ratio')}: only 0.5 is supported"),
        (raw.get("vision_feature_select_strategy", "default") == "default",
         "vision_feature_select_strategy: only 'default' (the class token dropped) is supported"),
        (vision["use_absolute_position_embeddings"], "vision_config.use_absolute_position_embeddings=false is not supported"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
