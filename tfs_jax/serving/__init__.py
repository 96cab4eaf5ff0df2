"""Serving-side helpers for running pruned video tokens through a real VLM stack.

Host-side bookkeeping in numpy (jax only to refuse tracers): no flax, torch or transformers,
so `import tfs_jax.serving` stays as light as the core.

Shape glossary (jaxtyping strings used here):
  l        tokens of the unpruned prompt (every placeholder present)
  l_kept   tokens of the pruned prompt, `l` less the dropped video placeholders
  p        video placeholders of the prompt, in order (what `keep` masks)
  v, i     video and image grid rows (`(t, h, w)` patches before the spatial merge)
  t        merged frames of one video row
"""

from tfs_jax.serving.rope import CONVENTIONS
from tfs_jax.serving.rope import qwen_vl_rope_index
