"""The static sizes of the LM and of FastV inside it (hashable: `jax.jit` static arguments)."""

from __future__ import annotations

import dataclasses
import math

from tfs_jax.checks import check_count
from tfs_jax.checks import check_retain_ratio
from tfs_jax.checks import is_int

_SIZES = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
          "intermediate_size", "vision_dim", "temporal_stride")


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    """Sizes of the LM (static: hashable, passed to `jax.jit` as a static argument).

    Attributes:
      vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size:
        the Qwen2 decoder sizes (`num_heads` a multiple of `num_kv_heads`).
      vision_dim: feature dimension of the video tokens fed to the projector.
      projector: "mlp" (Linear, GELU, Linear, as Qwen2-VL's merger) or "linear".
      rope_theta: RoPE base.
      mrope_section: frequency bands given to (t, h, w); sums to `head_dim // 2`.
      temporal_stride: position step between frames (Qwen2.5-VL: tokens per second times
        seconds per temporal patch; Qwen2-VL: 1).
      rms_eps: RMSNorm epsilon.
    """

    vocab_size: int = 151_936
    hidden_size: int = 896
    num_layers: int = 24
    num_heads: int = 14
    num_kv_heads: int = 2
    intermediate_size: int = 4864
    vision_dim: int = 1536
    projector: str = "mlp"
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (8, 12, 12)
    temporal_stride: int = 1
    rms_eps: float = 1e-6

    def __post_init__(self):
        for name in _SIZES:
            check_count(name, getattr(self, name), 1)
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}, "
                f"itself a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        object.__setattr__(self, "mrope_section", self._checked_section())
        if self.projector not in ("mlp", "linear"):
            raise ValueError(f"projector={self.projector!r} must be 'mlp' or 'linear'")
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
            raise ValueError(f"rope_theta={self.rope_theta!r} must be a finite number > 1")
        if not (math.isfinite(self.rms_eps) and self.rms_eps > 0):
            raise ValueError(f"rms_eps={self.rms_eps!r} must be a finite number > 0")

    def _checked_section(self) -> tuple[int, int, int]:
        """`mrope_section` as a tuple (a list would make the config unhashable)."""
        section = tuple(self.mrope_section)
        if len(section) != 3 or not all(is_int(s) and s >= 0 for s in section):
            raise ValueError(f"mrope_section={self.mrope_section!r} must be three integers >= 0")
        if sum(section) != self.head_dim // 2:
            raise ValueError(f"mrope_section={section} must sum to head_dim // 2 = {self.head_dim // 2}")
        return section

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def decoder(self):
        """This LM as a `tfs_jax.models.decoder.DecoderConfig` (the one decoder it runs)."""
        from tfs_jax.models.decoder import DecoderConfig  # noqa: PLC0415  (models imports vlm lazily)

        return DecoderConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
            num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
            intermediate_size=self.intermediate_size, rope_theta=self.rope_theta,
            mrope_section=self.mrope_section, rms_eps=self.rms_eps, qkv_bias=True)

    @classmethod
    def tiny(cls, **changes) -> VLMConfig:
        """A 2-layer toy for tests: hidden 64, 4 heads of 16, 2 KV heads, vision dim 16."""
        sizes = dict(vocab_size=97, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                     intermediate_size=128, vision_dim=16, mrope_section=(2, 3, 3),
                     rope_theta=10_000.0)
        return cls(**{**sizes, **changes})

    @classmethod
    def qwen2_0_5b(cls, **changes) -> VLMConfig:
        """Qwen2-0.5B shapes (hidden 896, 24 layers, 14 heads, 2 KV heads, SwiGLU 4864),
        M-RoPE sections (8, 12, 12) (Qwen2-VL's (16, 24, 24) scaled to head_dim 64)."""
        return cls(**changes)


@dataclasses.dataclass(frozen=True)
class FastVConfig:
    """FastV inside the LM (static): prune video slots after `layer` layers.

    Attributes:
      layer: L >= 1; layer L-1's last-token attention ranks the video slots, layers >= L see
        only the kept ones (FastV's K; its paper uses 2).
      retain_ratio: share of video slots kept, `R = static_budget(K, retain_ratio)` slots of
        which `video_budget(valid slots, retain_ratio)` are real (algorithm §7 budgets).
    """

    layer: int = 2
    retain_ratio: float = 0.5

    def __post_init__(self):
        check_count("layer", self.layer, 1)
        check_retain_ratio(self.retain_ratio)
