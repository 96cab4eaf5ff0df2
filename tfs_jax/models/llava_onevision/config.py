"""LLaVA-OneVision's static configuration, read from a checkpoint's `config.json`.

Field names follow transformers 4.51.3's `LlavaOnevisionConfig`: `vision_config` (a SigLIP
vision tower), `text_config` (Qwen2), and the top-level `vision_feature_layer`,
`vision_feature_select_strategy`, `image_token_index`, `video_token_index`,
`projector_hidden_act` and `multimodal_projector_bias`. A key a config.json leaves out takes
4.51.3's default (its `SiglipVisionConfig`, `Qwen2Config` and `LlavaOnevisionConfig`).
"""

from __future__ import annotations

import dataclasses

from tfs_jax.checks import check_count
from tfs_jax.checks import is_int
from tfs_jax.models.decoder import DecoderConfig

ACTIVATIONS = ("gelu", "gelu_pytorch_tanh")  # erf GELU, tanh GELU (transformers' ACT2FN names)
# transformers 4.51.3's defaults for keys a config.json leaves out.
_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                        num_attention_heads=12, num_channels=3, image_size=224, patch_size=16,
                        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=True)
_TEXT_DEFAULTS = dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                      rope_theta=10000.0, rms_norm_eps=1e-6, hidden_act="silu",
                      tie_word_embeddings=False, use_sliding_window=False, rope_scaling=None)


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The SigLIP vision tower (static, hashable).

    Attributes:
      hidden_size, intermediate_size, num_layers, num_heads: the ViT.
      num_channels, image_size, patch_size: a frame is `image_size` square; the patch grid
        is `image_size // patch_size` on a side (384 // 14 = 27: the last 6 pixel rows and
        columns are never seen, as a stride-14 "valid" convolution leaves them).
      hidden_act: the MLP's activation; layer_norm_eps: LayerNorm's epsilon.
      use_head: the checkpoint holds SigLIP's attention-pooling head (loaded, never used).
    """

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_channels: int
    image_size: int
    patch_size: int
    hidden_act: str
    layer_norm_eps: float
    use_head: bool

    def __post_init__(self):
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_channels",
                     "image_size", "patch_size"):
            check_count(f"vision_config.{name}", getattr(self, name), 1)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision_config.hidden_size={self.hidden_size} must be a multiple of "
                             f"num_attention_heads={self.num_heads}")
        if self.patch_size > self.image_size:
            raise ValueError(f"vision_config.patch_size={self.patch_size} exceeds image_size={self.image_size}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"vision_config.hidden_act={self.hidden_act!r} must be one of {ACTIVATIONS}")

    @property
    def grid(self) -> int:
        """Patches on a side of a frame."""
        return self.image_size // self.patch_size

    @property
    def pooled(self) -> int:
        """Tokens on a side of a frame after the 2x2 pooling: `ceil(grid / 2)`."""
        return -(-self.grid // 2)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclasses.dataclass(frozen=True)
class LlavaOnevisionConfig:
    """A LLaVA-OneVision checkpoint's configuration (static, hashable).

    Attributes:
      text: the Qwen2 LM as the one decoder's `DecoderConfig` (1-D RoPE, q/k/v biases).
      vision: the SigLIP tower.
      feature_layers: the tower's `hidden_states` indices the projector reads (0 is the
        patch embeddings, `i` the output of layer `i`), normalised from
        `vision_feature_layer` (an int or a list, negative counting from the end, as
        transformers indexes its tuple); several are concatenated on the feature axis.
      feature_layer_is_list: `vision_feature_layer` was a list (the projector's input
        width is `len(feature_layers) * vision.hidden_size` either way).
      projector_act: `projector_hidden_act`; projector_bias: `multimodal_projector_bias`.
      image_token_id, video_token_id: placeholder ids (`image_token_index`, `video_token_index`).
      tie_word_embeddings: the LM head is the embedding matrix (the text config's flag, which
        transformers' `tie_weights` reads).
      torch_dtype: the checkpoint's declared dtype name, or None.
    """

    text: DecoderConfig
    vision: VisionConfig
    feature_layers: tuple[int, ...]
    projector_act: str
    projector_bias: bool
    image_token_id: int
    video_token_id: int
    tie_word_embeddings: bool
    torch_dtype: str | None = None
    model_type: str = "llava_onevision"

    def __post_init__(self):
        if self.projector_act not in ACTIVATIONS:
            raise ValueError(f"projector_hidden_act={self.projector_act!r} must be one of {ACTIVATIONS}")

    @property
    def feature_width(self) -> int:
        """The projector's input width."""
        return len(self.feature_layers) * self.vision.hidden_size

    @property
    def tower_depth(self) -> int:
        """Layers the tower must run: up to the deepest feature layer (later ones are unused)."""
        return max(self.feature_layers)

    @classmethod
    def from_dict(cls, raw: dict) -> LlavaOnevisionConfig:
        """From a parsed `config.json`; a missing or bad field raises `ValueError` naming it."""
        vision = {**_VISION_DEFAULTS, **(raw.get("vision_config") or {})}
        text = {**_TEXT_DEFAULTS, **(raw.get("text_config") or {})}
        _check_supported(raw, vision, text)
        try:
            tower = VisionConfig(
                hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
                num_layers=vision["num_hidden_layers"], num_heads=vision["num_attention_heads"],
                num_channels=vision["num_channels"], image_size=vision["image_size"],
                patch_size=vision["patch_size"], hidden_act=vision["hidden_act"],
                layer_norm_eps=float(vision["layer_norm_eps"]), use_head=bool(vision["vision_use_head"]))
            decoder = DecoderConfig(
                vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
                num_layers=text["num_hidden_layers"], num_heads=text["num_attention_heads"],
                num_kv_heads=text["num_key_value_heads"] or text["num_attention_heads"],
                intermediate_size=text["intermediate_size"], rope_theta=float(text["rope_theta"]),
                mrope_section=None, rms_eps=float(text["rms_norm_eps"]), qkv_bias=True)
            return cls(
                text=decoder, vision=tower,
                feature_layers=feature_layers(raw.get("vision_feature_layer", -1), tower.num_layers),
                projector_act=raw.get("projector_hidden_act", "gelu"),
                projector_bias=bool(raw.get("multimodal_projector_bias", True)),
                image_token_id=int(raw.get("image_token_index", 151646)),
                video_token_id=int(raw.get("video_token_index", 151647)),
                tie_word_embeddings=bool(text["tie_word_embeddings"]),
                torch_dtype=str(raw["torch_dtype"]) if raw.get("torch_dtype") else None)
        except TypeError as bad:
            raise ValueError(f"config.json: {bad}") from None


def feature_layers(value, num_layers: int) -> tuple[int, ...]:
    """`vision_feature_layer` (int or list) as indices into the `num_layers + 1` hidden states.

    Index 0 (the embeddings alone) is refused: no checkpoint reads it, and it would make
    the projector's input independent of every layer.
    """
    items = [value] if is_int(value) else list(value) if isinstance(value, (list, tuple)) else None
    if not items or not all(is_int(i) for i in items):
        raise ValueError(f"vision_feature_layer={value!r} must be an int or a non-empty list of ints")
    out = []
    for i in items:
        j = int(i) + num_layers + 1 if i < 0 else int(i)
        if not 1 <= j <= num_layers:
            raise ValueError(f"vision_feature_layer={value!r}: {i} does not name one of the "
                             f"{num_layers} layers' outputs")
        out.append(j)
    return tuple(out)


def _check_supported(raw: dict, vision: dict, text: dict) -> None:
    """Refuse the variants this implementation does not reproduce, each by name."""
    strategy = raw.get("vision_feature_select_strategy", "full")
    if strategy != "full":
        raise ValueError(f"vision_feature_select_strategy={strategy!r}: only 'full' is supported (SigLIP "
                         "has no class token; 4.51.3's video path fails on 'default' too)")
    if vision.get("model_type", "siglip_vision_model") != "siglip_vision_model":
        raise ValueError(f"vision_config.model_type={vision['model_type']!r}: only 'siglip_vision_model'")
    if text.get("model_type", "qwen2") != "qwen2":
        raise ValueError(f"text_config.model_type={text['model_type']!r}: only 'qwen2' is implemented")
    if text["hidden_act"] != "silu":
        raise ValueError(f"text_config.hidden_act={text['hidden_act']!r}: only 'silu' is implemented")
    if text["use_sliding_window"]:
        raise ValueError("text_config.use_sliding_window=true is not implemented")
    if text["rope_scaling"]:
        raise ValueError(f"text_config.rope_scaling={text['rope_scaling']!r} is not implemented")
