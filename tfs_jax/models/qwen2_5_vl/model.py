"""Qwen2.5-VL's `Model`: public stages, and `forward` / `generate` composed from them.

    vision -> prune_videos -> prompt -> prefill -> decode ...

- `vision`: patches to merged embeddings (`vision.vision_tower`), one program per grid;
- `prune_videos`: `serving.prune_video_embeds` on each video's merged `(t, h/2, w/2)` grid
  (TFS or a baseline of `baselines.RULES`), slots cut to a bucket by `serving.compact`;
- `prompt` (host, numpy): the pruned prompt's token ids and visual rows, M-RoPE positions
  from `serving.qwen_vl_rope_index(..., keep=...)` (the "qwen" convention: transformers
  4.51's rule, fractional `second_per_grid_ts` included), padded at the end to a bucket so
  one LM program serves every prompt length of a bucket (causal attention never lets a
  real token see the trailing padding);
- `prefill`: the one decoder over the prompt, logits and a KV cache of static length;
- `decode`: one token; the new token sits at cache slot `L'` + step and M-RoPE position
  `L' + rope_delta` + step on all three axes.

Images are embedded but never pruned. `prune=None` reproduces transformers 4.51.3.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from tfs_jax import baselines
from tfs_jax.checks import check_count
from tfs_jax.checks import check_grid_thw
from tfs_jax.checks import check_prompt_ids
from tfs_jax.config import TFSConfig
from tfs_jax.models.decoder import rms_norm
from tfs_jax.models.decoder import run_layers
from tfs_jax.models.decoder import step_layers
from tfs_jax.models.qwen2_5_vl.config import Qwen25VLConfig
from tfs_jax.models.qwen2_5_vl.vision import vision_tower
from tfs_jax.serving import compact
from tfs_jax.serving import prune_video_embeds
from tfs_jax.serving import qwen_vl_rope_index

LOGITS_MODES = ("all", "last")
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
      positions: `(3, B)` int32 M-RoPE positions (padding repeats the last).
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
      positions: `(3, L')` int32 M-RoPE positions of the (pruned) prompt.
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


class Model:
    """A loaded Qwen2.5-VL (`tfs_jax.models.load`): `config`, `params`, stages."""

    def __init__(self, config: Qwen25VLConfig, params: dict):
        self.config = config
        self.params = params

    @property
    def dtype(self):
        return self.params["embed"].dtype

    # ------------------------------------------------------------------ stages

    def vision(self, pixel_values, grid_thw, *, hidden_states: bool = False):
        """Merged embeddings `(N, d)` float32 of patches `(sum t*h*w, 1176)` (processor order)."""
        return vision_tower(self.params["visual"], pixel_values, grid_thw, config=self.config.vision,
                            hidden_states=hidden_states)

    def prune_videos(self, video_embeds, video_grid_thw, *, prune, retain_ratio=None, key=None,
                     buckets=None):
        """Prune every video on its merged grid; `None` when `prune` is None.

        Args:
          video_embeds: `(N, d)` merged embeddings of all videos, in order.
          video_grid_thw: `(V, 3)` rows (patches before the merge).
          prune: a `TFSConfig`, a baseline name of `tfs_jax.baselines.RULES`, or None.
          retain_ratio: the kept share; required for a baseline, replaces a TFSConfig's own.
          key: PRNG key of the random pruners (default `key(0)`).
          buckets: slot counts for `serving.compact` (default its own).

        Returns:
          `serving.PrunedVideos` whose `keep_mask` is over the `N` video placeholders.
        """
        config, method = _prune_spec(prune, retain_ratio)
        if config is None:
            return None
        pruned = prune_video_embeds(video_embeds, video_grid_thw, config, method=method, key=key,
                                    spatial_merge_size=self.config.vision.spatial_merge_size)
        return compact(pruned, buckets)

    def prompt(self, input_ids, *, video_embeds=None, video_grid_thw=None, second_per_grid_ts=None,
               image_embeds=None, image_grid_thw=None, pruned=None, bucket: int = BUCKET) -> Prompt:
        """The LM's input (host-side bookkeeping; module docstring).

        Args:
          input_ids: `(L,)` the unpruned prompt, every placeholder present.
          video_embeds: `(N, d)` unpruned video embeddings (ignored when `pruned` is given).
          pruned: `prune_videos`' result, or None.
          image_embeds: `(M, d)` image embeddings. The grids as in `forward`;
            `second_per_grid_ts` defaults to 1 second per grid step, as transformers 4.51.3's.
          bucket: the padded length is a multiple of it.
        """
        c = self.config
        ids = check_prompt_ids(input_ids)
        keep = None if pruned is None else np.asarray(pruned.keep_mask, bool)
        if second_per_grid_ts is None and video_grid_thw is not None:
            second_per_grid_ts = np.ones(len(np.asarray(video_grid_thw)), np.float32)  # transformers' fallback
        positions, delta = qwen_vl_rope_index(
            ids, video_grid_thw, video_token_id=c.video_token_id,
            spatial_merge_size=c.vision.spatial_merge_size, second_per_grid_ts=second_per_grid_ts,
            tokens_per_second=float(c.vision.tokens_per_second), keep=keep,
            image_grid_thw=None if image_embeds is None else image_grid_thw,
            image_token_id=None if image_embeds is None else c.image_token_id)
        if keep is not None:
            ids = np.delete(ids, np.flatnonzero(ids == c.video_token_id)[~keep])
        video = pruned.embeds if pruned is not None else video_embeds
        rows, visual = _visual_rows(ids == c.video_token_id, ids == c.image_token_id, video, image_embeds,
                                    width=c.text.hidden_size)
        return _padded_prompt(ids, rows, visual, positions, delta, check_count("bucket", bucket, 1))

    def prefill(self, prompt: Prompt, *, logits: str = "last", cache_len: int | None = None,
                hidden_states: bool = False):
        """The LM over a `Prompt`.

        Returns:
          `(logits, cache, hidden)`: logits `(V,)` of the last real token ("last") or
          `(L', V)` ("all"); a `KVCache` of `cache_len` slots (>= the padded prompt) or None;
          `(layers + 1, L', d)` hidden states or None.
        """
        if logits not in LOGITS_MODES:
            raise ValueError(f"logits={logits!r} must be one of {LOGITS_MODES}")
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
        return _decode(self.params, cache, jnp.asarray(token, jnp.int32), config=self.config)

    # ------------------------------------------------------------------ compositions

    def prepare(self, input_ids, *, pixel_values_videos=None, video_grid_thw=None,
                second_per_grid_ts=None, pixel_values=None, image_grid_thw=None, prune=None,
                retain_ratio=None, key=None) -> tuple[Prompt, np.ndarray | None]:
        """`vision`, `prune_videos` and `prompt` in a row; returns the prompt and `keep`."""
        _prune_spec(prune, retain_ratio)
        _check_request(self.config, input_ids, pixel_values_videos, video_grid_thw,
                       pixel_values, image_grid_thw)
        videos = None if pixel_values_videos is None else self.vision(pixel_values_videos, video_grid_thw)
        images = None if pixel_values is None else self.vision(pixel_values, image_grid_thw)
        pruned = None
        if videos is not None and prune is not None:
            pruned = self.prune_videos(videos, video_grid_thw, prune=prune, retain_ratio=retain_ratio, key=key)
        prompt = self.prompt(input_ids, video_embeds=videos, video_grid_thw=video_grid_thw,
                             second_per_grid_ts=second_per_grid_ts, image_embeds=images,
                             image_grid_thw=image_grid_thw, pruned=pruned)
        return prompt, None if pruned is None else np.asarray(pruned.keep_mask, bool)

    def forward(self, input_ids, *, pixel_values_videos=None, video_grid_thw=None,
                second_per_grid_ts=None, pixel_values=None, image_grid_thw=None, prune=None,
                retain_ratio=None, logits: str = "all", hidden_states: bool = False, key=None) -> Output:
        """One prompt `(L,)` through the model (module docstring; `tfs_jax.models` API)."""
        if logits not in LOGITS_MODES:
            raise ValueError(f"logits={logits!r} must be one of {LOGITS_MODES}")
        prompt, keep = self.prepare(
            input_ids, pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts, pixel_values=pixel_values,
            image_grid_thw=image_grid_thw, prune=prune, retain_ratio=retain_ratio, key=key)
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
        cache_len = max(prompt.ids.shape[0], _round_up(prompt.length + max_new_tokens, BUCKET))
        logits, cache, _ = self.prefill(prompt, logits="last", cache_len=cache_len)
        tokens = []
        for _ in range(max_new_tokens):
            tokens.append(int(jnp.argmax(logits)))
            if tokens[-1] in eos or len(tokens) == max_new_tokens:
                break
            logits, cache = self.decode(cache, tokens[-1])
        return np.asarray(tokens, np.int32)


# ---------------------------------------------------------------------- helpers


def _prune_spec(prune, retain_ratio) -> tuple[TFSConfig | None, str]:
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


def _check_request(config, input_ids, pixel_values_videos, video_grid_thw, pixel_values,
                   image_grid_thw) -> None:
    """Media given with their grids, and placeholder counts that match the grids."""
    ids = check_prompt_ids(input_ids)
    m = config.vision.spatial_merge_size
    for kind, pixels, grid, token in (("video", pixel_values_videos, video_grid_thw, config.video_token_id),
                                      ("image", pixel_values, image_grid_thw, config.image_token_id)):
        name = "pixel_values_videos" if kind == "video" else "pixel_values"
        if (pixels is None) != (grid is None):
            raise ValueError(f"{name} and {kind}_grid_thw must be given together (or neither)")
        rows = check_grid_thw(f"{kind}_grid_thw", grid, m)
        want = int(np.sum(np.prod(rows, axis=1))) // m ** 2
        found = int(np.sum(ids == token))
        if found != want:
            raise ValueError(f"input_ids hold {found} {kind} placeholders (id {token}) but "
                             f"{kind}_grid_thw {rows.tolist()} needs {want}")


def _visual_rows(is_video, is_image, video, images, *, width: int):
    """Which row of the visual array each prompt slot takes (-1: text), and that array
    (images first, then videos); too few embeddings for the placeholders raise."""
    for name, need, have in (("video", is_video.sum(), video), ("image", is_image.sum(), images)):
        held = 0 if have is None else int(np.shape(have)[0])
        if need > held:
            raise ValueError(f"the prompt keeps {need} {name} placeholders but only {held} "
                             f"{name} embeddings were given")
    rows = np.full(is_video.shape, -1, np.int64)
    rows[is_image] = np.arange(int(is_image.sum()))
    rows[is_video] = (0 if images is None else int(np.shape(images)[0])) + np.arange(int(is_video.sum()))
    parts = [jnp.asarray(p, jnp.float32) for p in (images, video) if p is not None]
    return rows, jnp.concatenate(parts) if parts else jnp.zeros((1, width), jnp.float32)


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _padded_prompt(ids, rows, visual, positions, delta, bucket) -> Prompt:
    """Pad the pruned prompt at the end, and the visual rows, to multiples of `bucket`
    (padding takes the last position): one LM program per pair of buckets."""
    length = len(ids)
    size = _round_up(length, bucket)
    pad = size - length
    extra = _round_up(visual.shape[0], bucket) - visual.shape[0]
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
