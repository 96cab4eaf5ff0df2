"""A Qwen2-style video LM to run pruned video tokens through (the VLM adapter).

A random-initialised decoder-only LM in the Qwen2 / Qwen2-VL style: RMSNorm, SwiGLU MLP,
grouped-query attention with q/k/v biases, and multimodal RoPE (M-RoPE): the rotary
frequency bands are split into temporal, height and width sections, each rotated by that
coordinate of the token's `(t, h, w)` position (Qwen2-VL, `mrope_section`). Visual features
enter through a projector (linear or 2-layer GELU MLP) from the encoder dimension.

Sequence layout (one sequence; `jax.vmap` for a batch):

    [prefix text: P tokens] [video: K slots] [suffix text: S tokens]

Positions follow Qwen2-VL's `get_rope_index` on the *unpruned* sequence, indexed by the kept
tokens (as the VidCom2 / FastVID Qwen ports and vLLM's EVS do): prefix token `p` sits at
`(p, p, p)`; a video token keeps its original `(P + t * temporal_stride, P + h, P + w)`
whether or not its neighbours were pruned; the suffix continues from the full grid,
`P + max((T - 1) * temporal_stride, H - 1, W - 1) + 1` onwards, so pruning never moves text.

The K video slots have a validity mask: a padding slot takes part in nothing. Its input is
zeroed (`where`, so NaN garbage cannot leak), it attends only to itself and nothing attends
to it; everything else is causal. So one compiled program serves every video of one shape.

FastV (Chen et al., 2024) runs inside the LM: layers `[0, L)` see every slot; the last
token's head-averaged attention in layer `L - 1` ranks the valid video slots and layers
`[L, n)` run on the prefix, the top `R` video slots (time order, original positions) and the
suffix. The cascade of the paper's Table 3 is `tfs_prune` at 50% then FastV at 50%:

    result = tfs_jax.tfs_prune(tokens, tfs_jax.TFSConfig(retain_ratio=0.5))
    out = prefill(params, tokens, prefix_ids, suffix_ids, config=cfg, result=result,
                  fastv=FastVConfig(layer=2, retain_ratio=0.5))

Modules: `config` (the static sizes), `rope` (positions and M-RoPE), `modules` (the Flax
names and the parameter pytree), `forward` (`forward`, `prefill` and the FastV split). The
decoder layers themselves are `tfs_jax.models.decoder`, the one decoder the real models run
too; `RMSNorm`, `Attention`, `DecoderLayer`, `attention_mask`, `mrope_cos_sin` and
`apply_rope` stay importable from here for one release (CHANGELOG.md).
"""

from tfs_jax.vlm.config import FastVConfig
from tfs_jax.vlm.config import VLMConfig
from tfs_jax.vlm.forward import LOGITS_MODES
from tfs_jax.vlm.forward import VLMOutput
from tfs_jax.vlm.forward import forward
from tfs_jax.vlm.forward import prefill
from tfs_jax.vlm.forward import video_slots
from tfs_jax.vlm.modules import Attention
from tfs_jax.vlm.modules import DecoderLayer
from tfs_jax.vlm.modules import Projector
from tfs_jax.vlm.modules import RMSNorm
from tfs_jax.vlm.modules import attention_mask
from tfs_jax.vlm.modules import init_params
from tfs_jax.vlm.modules import param_shapes
from tfs_jax.vlm.rope import apply_rope
from tfs_jax.vlm.rope import grid_positions
from tfs_jax.vlm.rope import mrope_cos_sin
from tfs_jax.vlm.rope import positions_in_slots
from tfs_jax.vlm.rope import sequence_positions

__all__ = [
    # sizes
    "VLMConfig",
    "FastVConfig",
    # positions and rotary embedding
    "sequence_positions",
    "grid_positions",
    "mrope_cos_sin",
    "positions_in_slots",
    "apply_rope",
    # layers and parameters
    "attention_mask",
    "RMSNorm",
    "Attention",
    "DecoderLayer",
    "Projector",
    "param_shapes",
    "init_params",
    # the forward pass
    "LOGITS_MODES",
    "VLMOutput",
    "forward",
    "prefill",
    "video_slots",
]
