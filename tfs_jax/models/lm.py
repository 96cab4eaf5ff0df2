"""The family-neutral half of every real model: the LM's input, its prefill, KV cache,
greedy decoding, and the `prune` argument (shared by every family).

A family's `Model` builds a `Prompt` (its own vision tower, pruning and positions), then
`Stages` runs the one decoder over it:

- `Prompt`: the pruned prompt padded at the end to a bucket, so one LM program serves
  every length of a bucket (causal attention never lets a real token see the padding);
  positions are `(3, B)` rows, equal for a 1-D RoPE LM (`DecoderConfig.mrope_section=None`
  reads the first row only);
- `Stages.prefill`, `Stages.decode`, `Stages.generate`: logits, a KV cache of static,
  bucketed length, greedy tokens; the `n`-th new token sits at cache slot `L' + n` and
  position `L' + rope_delta + n` on every row;
- `cache_length`, `greedy`: the cache size and the greedy loop of `generate` (and `tfs-jax ask`);
- `kept_positions`: the 1-D RoPE families' slots and positions of a pruned prompt
  (`POSITION_MODES`);
- `check_token_ids`: prompt ids inside the vocabulary (a gather out of range is silent);
- `prune_spec`: `None`, a `TFSConfig` or a baseline name of `baselines.RULES`, checked.

A family config used here has `.text` (the decoder's `DecoderConfig`) and is hashable; its
params have "embed", "layers", "final_norm" and, when untied, "lm_head".
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from tfs_jax import baselines
from tfs_jax.checks import check_count
from tfs_jax.checks import check_prompt_ids
from tfs_jax.config import TFSConfig
from tfs_jax.models.decoder import rms_norm
from tfs_jax.models.decoder import run_layers
from tfs_jax.models.decoder import step_layers

LOGITS_MODES = ("all", "last")
POSITION_MODES = ("renumber", "original")  # 1-D RoPE families' positions of a pruned prompt
BUCKET = 128  # prompt and KV-cache lengths are rounded up to a multiple of this


def _dataclass_pytree(data, meta=()):
    def wrap(cls):
        return jax.tree_util.register_dataclass(dataclasses.dataclass(frozen=True)(cls),
                                                data_fields=list(data), meta_fields=list(meta))
    return wrap


@_dataclass_pytree(["ids", "rows", "visual", "positions", "length", "rope_delta"])
class Prompt:
    """The LM's input, padded at the end to `B` slots (`Model.prompt`).

    Attributes:
      ids: `(B,)` int32 token ids (placeholders and padding included; their rows override).
      rows: `(B,)` int32 row of `visual` a slot takes, -1 for a text token.
      visual: `(R, d)` image embeddings, then the (kept) video embeddings in prompt order,
        then zero rows up to a multiple of the bucket.
      positions: `(3, B)` int32 positions, M-RoPE rows or three equal 1-D rows (padding
        repeats the last).
      length: `L'`, real tokens. rope_delta: the decoder's position offset (ints on the
        host, traced inside `jit`: one program serves every length of a bucket).
    """

    ids: Int[Array, "b"]
    rows: Int[Array, "b"]
    visual: Float[Array, "r d"]
    positions: Int[Array, "3 b"]
    length: int
    rope_delta: int


@_dataclass_pytree(["keys", "values", "index", "position"])
class KVCache:
    """Keys and values `(layers, C, kv, e)` of a static length `C`; `index` the next slot,
    `position` the next token's M-RoPE position (int32 scalars)."""

    keys: Array
    values: Array
    index: Int[Array, ""]
    position: Int[Array, ""]


@dataclasses.dataclass(frozen=True)
class Output:
    """`Model.forward`'s result.

    Attributes:
      logits: `(L', V)` float32, or `(V,)` of the last token with `logits="last"`.
      positions: `(3, L')` int32 positions of the (pruned) prompt (rows equal for 1-D RoPE).
      rope_delta: the first new token's position is `L' + rope_delta`.
      keep: `(N,)` bool over the video placeholders in prompt order, or None (unpruned).
      hidden_states: `(layers + 1, L', d)`: the LM's input embeddings, then every layer's
        output (transformers' `hidden_states` but for its last, normed entry), or None.
    """

    logits: Array
    positions: np.ndarray
    rope_delta: int
    keep: np.ndarray | None
    hidden_states: Array | None = None


class Stages:
    """`prefill`, `decode` and `generate` of a family `Model` (`config`, `params`,
    `prepare(input_ids, *, prune, retain_ratio, key, **media) -> (Prompt, keep)`)."""

    @property
    def dtype(self):
        return self.params["embed"].dtype

    def prefill(self, prompt: Prompt, *, logits: str = "last", cache_len: int | None = None,
                hidden_states: bool = False):
        """The LM over a `Prompt`.

        Returns:
          `(logits, cache, hidden)`: logits `(V,)` of the last real token ("last") or
          `(L', V)` ("all"); a `KVCache` of `cache_len` slots (>= the padded prompt) or None;
          `(layers + 1, L', d)` hidden states or None.
        """
        check_logits(logits)
        padded = prompt.ids.shape[0]
        if cache_len is not None and cache_len < padded:
            raise ValueError(f"cache_len={cache_len} must be at least the padded prompt, {padded}")
        out, cache, hidden = _prefill(self.params, prompt, config=self.config, mode=logits,
                                      cache_len=cache_len, hidden=hidden_states)
        if logits == "all":
            out = out[:prompt.length]
        return out, cache, None if hidden is None else hidden[:, :prompt.length]

    def decode(self, cache: KVCache, token) -> tuple[Float[Array, "v"], KVCache]:
        """One step: the logits after `token` (an int) and the cache holding it."""
        check_token_ids(np.atleast_1d(token), self.config.text.vocab_size, name="token")
        slots = cache.keys.shape[1]
        if int(cache.index) >= slots:  # dynamic_update_slice would clamp onto the last slot
            raise ValueError(f"the KV cache is full ({slots} slots): prefill with a larger cache_len")
        return _decode(self.params, cache, jnp.asarray(token, jnp.int32), config=self.config)

    def output(self, prompt: Prompt, keep, *, logits: str, hidden_states: bool) -> Output:
        """`prefill` without a cache, as `forward`'s `Output`."""
        out, _, hidden = self.prefill(prompt, logits=logits, hidden_states=hidden_states)
        positions = np.asarray(prompt.positions)[:, :prompt.length]
        return Output(logits=out, positions=positions, rope_delta=prompt.rope_delta, keep=keep,
                      hidden_states=hidden)

    def generate(self, input_ids, *, max_new_tokens: int, eos_token_id=None, prune=None,
                 retain_ratio=None, key=None, **inputs) -> np.ndarray:
        """Greedy decoding: `(n,)` int32 new token ids, `n <= max_new_tokens` (stops after
        `eos_token_id`, an int or a list of ints). `inputs` are `forward`'s media arguments."""
        check_count("max_new_tokens", max_new_tokens, 1)
        eos = set() if eos_token_id is None else set(np.atleast_1d(eos_token_id).tolist())
        prompt, _ = self.prepare(input_ids, prune=prune, retain_ratio=retain_ratio, key=key, **inputs)
        logits, cache, _ = self.prefill(prompt, logits="last",
                                        cache_len=cache_length(prompt, max_new_tokens))
        return greedy(self, logits, cache, max_new_tokens, eos)


def cache_length(prompt: Prompt, max_new_tokens: int) -> int:
    """KV-cache slots for `max_new_tokens` after `prompt`: the padded prompt at least,
    rounded up to the bucket (one decode program per bucket)."""
    return max(prompt.ids.shape[0], round_up(prompt.length + max_new_tokens, BUCKET))


def greedy(model: Stages, logits, cache: KVCache, max_new_tokens: int, eos=frozenset(),
           on_token=None) -> np.ndarray:
    """Greedy tokens from the prefill's last logits on: `(n,)` int32, `n <= max_new_tokens`,
    the `eos` token included when reached (as transformers' `generate(do_sample=False)`).
    `on_token(id)` is called after each token (e.g. a progress bar)."""
    tokens = []
    while True:
        tokens.append(int(jnp.argmax(logits)))  # int() blocks: the step's time is in
        if on_token is not None:
            on_token(tokens[-1])
        if tokens[-1] in eos or len(tokens) == max_new_tokens:
            return np.asarray(tokens, np.int32)
        logits, cache = model.decode(cache, tokens[-1])


def check_token_ids(input_ids, vocab_size: int, *, name: str = "input_ids") -> np.ndarray:
    """`check_prompt_ids`, and every id in `[0, vocab_size)`: an embedding gather out of
    range clamps (or wraps when negative) silently inside `jit`."""
    ids = check_prompt_ids(input_ids)
    bad = (ids < 0) | (ids >= vocab_size)
    if np.any(bad):
        raise ValueError(f"{name} holds {int(bad.sum())} ids outside [0, {vocab_size}) (the "
                         f"vocabulary), e.g. {int(ids[bad][0])}")
    return ids


def check_positions(positions: str) -> None:
    if positions not in POSITION_MODES:
        raise ValueError(f"positions={positions!r} must be one of {POSITION_MODES}")


def kept_positions(is_placeholder: np.ndarray, keep, mode: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Which prompt slots a pruned 1-D RoPE prompt keeps, and their positions.

    Args:
      is_placeholder: `(L,)` bool, the prunable placeholders of the unpruned prompt.
      keep: `(N,)` bool over those placeholders in prompt order, or None (unpruned).
      mode: "renumber" (consecutive, as transformers fed fewer embeddings) or "original"
        (each kept token's unpruned position, gaps left).

    Returns:
      `(slots, positions, rope_delta)`: `(L',)` kept indices into the prompt, `(L',)`
      positions, and the offset that puts the first new token right after the last position.
    """
    slots = np.arange(len(is_placeholder))
    if keep is not None:
        slots = np.delete(slots, np.flatnonzero(is_placeholder)[~np.asarray(keep, bool)])
    pos = slots if mode == "original" else np.arange(len(slots))
    return slots, pos, int(pos[-1]) + 1 - len(slots)


def check_logits(logits: str) -> None:
    if logits not in LOGITS_MODES:
        raise ValueError(f"logits={logits!r} must be one of {LOGITS_MODES}")


def prune_spec(prune, retain_ratio) -> tuple[TFSConfig | None, str]:
    """`(TFSConfig, method)` of a `prune` argument, or `(None, "")`."""
    if prune is None:
        if retain_ratio is not None:
            raise ValueError(f"retain_ratio={retain_ratio!r} given without prune")
        return None, ""
    if isinstance(prune, TFSConfig):
        changes = {} if retain_ratio is None else {"retain_ratio": retain_ratio}
        return dataclasses.replace(prune, **changes), "tfs"
    if isinstance(prune, str) and prune in baselines.RULES:
        if retain_ratio is None:
            raise ValueError(f"prune={prune!r} needs a retain_ratio")
        return TFSConfig(retain_ratio=retain_ratio), prune
    raise ValueError(f"prune={prune!r} must be None, a TFSConfig or one of {tuple(baselines.RULES)}")



def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def padded_prompt(ids, rows, visual, positions, delta, bucket) -> Prompt:
    """Pad the pruned prompt at the end, and the visual rows, to multiples of `bucket`
    (padding takes the last position): one LM program per pair of buckets."""
    length = len(ids)
    size = round_up(length, bucket)
    pad = size - length
    extra = round_up(visual.shape[0], bucket) - visual.shape[0]
    visual = jnp.pad(visual, ((0, extra), (0, 0)))
    positions = np.concatenate([positions, np.repeat(positions[:, -1:], pad, axis=1)], axis=1)
    return Prompt(ids=jnp.asarray(np.pad(ids, (0, pad)), jnp.int32),
                  rows=jnp.asarray(np.pad(rows, (0, pad), constant_values=-1), jnp.int32),
                  visual=visual, positions=jnp.asarray(positions, jnp.int32), length=length,
                  rope_delta=int(delta))


def _head(params) -> Array:
    return params["lm_head"] if "lm_head" in params else params["embed"]


@functools.partial(jax.jit, static_argnames=("config", "mode", "cache_len", "hidden"))
def _prefill(params, prompt: Prompt, *, config, mode, cache_len, hidden):
    c, dtype = config.text, params["embed"].dtype
    text = params["embed"][prompt.ids]
    visual = prompt.visual.astype(dtype)[jnp.maximum(prompt.rows, 0)]
    x = jnp.where((prompt.rows >= 0)[:, None], visual, text)
    valid = jnp.ones(x.shape[:1], bool)
    out, layers, kv, _ = run_layers(params["layers"], x, prompt.positions.T, valid, config=c,
                                    zero_invalid=False, keep_hidden=hidden, keep_kv=cache_len is not None)
    normed = rms_norm(out, params["final_norm"]["scale"], eps=c.rms_eps)
    rows = normed[prompt.length - 1] if mode == "last" else normed
    logits = jnp.dot(rows, _head(params).T, preferred_element_type=jnp.float32)
    cache = None
    if cache_len is not None:
        keys, values = kv
        pad = ((0, 0), (0, cache_len - keys.shape[1]), (0, 0), (0, 0))
        cache = KVCache(keys=jnp.pad(keys, pad), values=jnp.pad(values, pad),
                        index=jnp.asarray(prompt.length, jnp.int32),
                        position=jnp.asarray(prompt.length + prompt.rope_delta, jnp.int32))
    states = jnp.concatenate([x[None], layers]) if hidden else None
    return logits, cache, states


@functools.partial(jax.jit, static_argnames=("config",))
def _decode(params, cache: KVCache, token, *, config):
    c = config.text
    x = params["embed"][token][None]
    positions = jnp.full((1, 3), cache.position, jnp.int32)
    x, (keys, values) = step_layers(params["layers"], x, positions, (cache.keys, cache.values),
                                    cache.index, config=c)
    normed = rms_norm(x[0], params["final_norm"]["scale"], eps=c.rms_eps)
    logits = jnp.dot(normed, _head(params).T, preferred_element_type=jnp.float32)
    return logits, KVCache(keys=keys, values=values, index=cache.index + 1, position=cache.position + 1)

