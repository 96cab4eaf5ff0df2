"""The serving contract: what a JAX serving stack calls to prune a Qwen-VL prompt's video.

- `prune_video_embeds`: the merged video embeddings of a prompt pruned video by video (TFS
  or any baseline), with the keep mask over placeholders and kept tokens per frame;
- `qwen_vl_rope_index`: M-RoPE positions of the pruned prompt and `rope_delta`, exactly as
  the unpruned prompt gives them (host-side bookkeeping in numpy);
- `compact`: kept slots packed into the smallest of a static list of buckets.

No flax, torch or transformers: `import tfs_jax.serving` stays as light as the core.

Shape names, beyond the package glossary (`tfs_jax`):
  l        tokens of the unpruned prompt (every placeholder present)
  l_kept   tokens of the pruned prompt, `l` less the dropped video placeholders
  n        video placeholders of the prompt, in order (what `keep` masks)
  k        kept slots; f  merged frames of all videos, in order
  videos, images   grid rows (`(t, h, w)` patches before the spatial merge)
"""

from tfs_jax.serving.embeds import PrunedVideos
from tfs_jax.serving.embeds import bucket_sizes
from tfs_jax.serving.embeds import compact
from tfs_jax.serving.embeds import pick_bucket
from tfs_jax.serving.embeds import prune_video_embeds
from tfs_jax.serving.rope import CONVENTIONS
from tfs_jax.serving.rope import qwen_vl_rope_index
