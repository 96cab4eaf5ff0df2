"""Qwen2.5-VL's static configuration, read from a checkpoint's `config.json`.

Field names follow transformers 4.51.3's `Qwen2_5_VLConfig` (text fields at the top level,
`vision_config` nested); a `text_config` block (transformers >= 4.53 layout) is read too.
"""

from __future__ import annotations

import dataclasses

from tfs_jax.checks import check_count
from tfs_jax.checks import is_int
from tfs_jax.models.decoder import DecoderConfig

# transformers 4.51.3's Qwen2_5_VLVisionConfig defaults, for keys a config.json leaves out.
_VISION_DEFAULTS = dict(depth=32, hidden_size=3584, intermediate_size=3420, num_heads=16,
                        in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                        tokens_per_second=4, window_size=112, out_hidden_size=3584,
                        fullatt_block_indexes=(7, 15, 23, 31), hidden_act="silu")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The vision tower's sizes (static, hashable).

    Attributes:
      depth, hidden_size, intermediate_size, num_heads: the ViT (head_dim = hidden/heads).
      in_channels, patch_size, temporal_patch_size: a patch is `C * tp * p * p` pixels
        (3 * 2 * 14 * 14 = 1176).
      spatial_merge_size: `m`; the merger joins `m x m` patches into one LM token.
      window_size: windowed attention's side in pixels (112 -> 4 x 4 merged tokens).
      fullatt_block_indexes: blocks attending over a whole frame instead of windows.
      out_hidden_size: the merger's output width (the LM's hidden size).
      tokens_per_second: M-RoPE temporal positions per second of video.
    """

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    in_channels: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    window_size: int
    fullatt_block_indexes: tuple[int, ...]
    out_hidden_size: int
    tokens_per_second: float

    def __post_init__(self):
        for name in ("depth", "hidden_size", "intermediate_size", "num_heads", "in_channels",
                     "patch_size", "temporal_patch_size", "spatial_merge_size", "out_hidden_size"):
            check_count(f"vision_config.{name}", getattr(self, name), 1)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 4:
            raise ValueError(f"vision_config.hidden_size={self.hidden_size} must be num_heads="
                             f"{self.num_heads} heads of a multiple of 4 (2-D rotary)")
        blocks = tuple(self.fullatt_block_indexes)
        if not all(is_int(b) and 0 <= b < self.depth for b in blocks):
            raise ValueError(f"vision_config.fullatt_block_indexes={blocks} must be block indices < {self.depth}")
        object.__setattr__(self, "fullatt_block_indexes", blocks)
        if self.window_size < 1 or self.window_size % (self.patch_size * self.spatial_merge_size):
            raise ValueError(f"vision_config.window_size={self.window_size} must be a positive multiple of "
                             f"patch_size * spatial_merge_size = {self.patch_size * self.spatial_merge_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.temporal_patch_size * self.patch_size ** 2

    @property
    def window_tokens(self) -> int:
        """Merged tokens per window side (`window_size / patch_size / m`)."""
        return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class Qwen25VLConfig:
    """A Qwen2.5-VL checkpoint's configuration (static, hashable).

    Attributes:
      text: the LM as the one decoder's `DecoderConfig` (M-RoPE, q/k/v biases).
      vision: the vision tower.
      image_token_id, video_token_id, vision_start_token_id: placeholder ids.
      tie_word_embeddings: the LM head is the embedding matrix (no `lm_head.weight`).
      torch_dtype: the checkpoint's declared dtype name ("bfloat16", "float32", ...), or
        None when config.json does not say (then any float dtype loads).
    """

    text: DecoderConfig
    vision: VisionConfig
    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    tie_word_embeddings: bool
    torch_dtype: str | None = None
    model_type: str = "qwen2_5_vl"

    @classmethod
    def from_dict(cls, raw: dict) -> Qwen25VLConfig:
        """From a parsed `config.json`; a missing or bad field raises `ValueError` naming it."""
        text = {**raw, **raw.get("text_config", {})}
        vision = {**_VISION_DEFAULTS, **raw.get("vision_config", {})}
        if vision["hidden_act"] != "silu":
            raise ValueError(f"vision_config.hidden_act={vision['hidden_act']!r}: only 'silu' is implemented")
        if text.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act={text['hidden_act']!r}: only 'silu' is implemented")
        section = (text.get("rope_scaling") or {}).get("mrope_section")
        if section is None:
            raise ValueError("config.json has no rope_scaling.mrope_section (Qwen2.5-VL's M-RoPE bands)")
        try:
            decoder = DecoderConfig(
                vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
                num_layers=text["num_hidden_layers"], num_heads=text["num_attention_heads"],
                num_kv_heads=text.get("num_key_value_heads") or text["num_attention_heads"],
                intermediate_size=text["intermediate_size"], rope_theta=float(text.get("rope_theta", 1e6)),
                mrope_section=tuple(section), rms_eps=float(text.get("rms_norm_eps", 1e-6)), qkv_bias=True)
            fields = {f.name for f in dataclasses.fields(VisionConfig)}
            return cls(
                text=decoder, vision=VisionConfig(**{k: v for k, v in vision.items() if k in fields}),
                image_token_id=int(text.get("image_token_id", 151655)),
                video_token_id=int(text.get("video_token_id", 151656)),
                vision_start_token_id=int(text.get("vision_start_token_id", 151652)),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                torch_dtype=str(raw["torch_dtype"]) if raw.get("torch_dtype") else None)
        except KeyError as missing:
            raise ValueError(f"config.json lacks the field {missing.args[0]!r}") from None
        except TypeError as bad:
            raise ValueError(f"config.json: {bad}") from None
