"""`Decision`: what every selector returns (TFS, each baseline, FastV), `gather_kept` and
`gather_slots`.

Decide, then apply (ToMe's `bipartite_soft_matching` then `merge_wavg`): a selector returns
which entries it keeps, as a mask over what it chose from and as `K` static slots of
indices; `gather_kept` or `gather_slots` (or the LM, for FastV) applies it. `K` is a Python
int fixed by the retain ratio and the size of what is chosen from, so shapes never depend
on the data.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, Shaped

from tfs_jax.budget import static_budget


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["indices", "slot_valid", "keep_mask", "num_kept"],
    meta_fields=[],
)
@dataclasses.dataclass(frozen=True)
class Decision:
    """A keep decision in static shapes (algorithm §11's first four fields).

    Attributes:
      indices: `(K,) int32` kept flat indices into `keep_mask`, ascending, then padding
        `keep_mask.size`.
      slot_valid: `(K,) bool` which entries of `indices` are real (`valid`, everywhere
        else, is the `(T, H, W)` input mask; `Decision.valid` is a deprecated alias).
      keep_mask: bool mask over what was chosen from: the `(T, H, W)` token grid for the
        video pruners, the `(K_in,)` video slots for FastV.
      num_kept: `() int32` number of real entries.
    """

    indices: Int[Array, "k"]
    slot_valid: Bool[Array, "k"]
    keep_mask: Bool[Array, "..."]
    num_kept: Int[Array, ""]

    @property
    def valid(self) -> Bool[Array, "k"]:
        """Deprecated: `slot_valid` (the name `valid` is the `(T, H, W)` input mask)."""
        warnings.warn("Decision.valid is deprecated: use Decision.slot_valid (the (K,) slot "
                      "validity; `valid` names the (T, H, W) input mask)", DeprecationWarning,
                      stacklevel=2)
        return self.slot_valid


def decide(keep: Bool[Array, "..."], retain_ratio: float, *, slots: int | None = None) -> Decision:
    """The `Decision` for a keep mask: kept flat indices ascending, then padding, in
    `K = static_budget(keep.size, retain_ratio)` slots, or `slots` when given (a prompt of
    several videos has the sum of their budgets). `keep` must hold at most `K`."""
    size = keep.size
    slots = static_budget(size, retain_ratio) if slots is None else slots
    indices = jnp.nonzero(keep.reshape(-1), size=slots, fill_value=size)[0].astype(jnp.int32)
    num_kept = jnp.sum(keep, dtype=jnp.int32)
    return Decision(indices, jnp.arange(slots) < num_kept, keep, num_kept)


def gather_slots(rows: Shaped[Array, "n d"], decision: Decision) -> Shaped[Array, "k d"]:
    """The rows of `rows` that `decision` keeps, in its `K` slots: kept rows first, then
    zero rows of the same dtype.

    `rows` is `(N, D)` with `N = decision.keep_mask.size` (the flattened entries the
    decision chose from); padding indices (`N`) are clamped before the gather and their
    slots zeroed.
    """
    rows = jnp.asarray(rows)
    kept = rows[jnp.minimum(decision.indices, rows.shape[0] - 1)]
    return jnp.where(decision.slot_valid[:, None], kept, jnp.zeros((), kept.dtype))


def gather_kept(
    tokens: Shaped[Array, "t h w d"], decision: Decision
) -> tuple[Shaped[Array, "k d"], Int[Array, "k 3"], Bool[Array, "k"]]:
    """The kept tokens in time order, their original `(t, h, w)` positions and validity.

    Padding slots hold zero tokens at position `(0, 0, 0)` and `slot_valid = False`; feed
    the mask to the model's attention so that they take no part.
    """
    t, h, w, d = tokens.shape
    kept = gather_slots(jnp.asarray(tokens).reshape(-1, d), decision)
    idx = jnp.minimum(decision.indices, t * h * w - 1)
    positions = jnp.stack([idx // (h * w), (idx // w) % h, idx % w], axis=-1)
    positions = jnp.where(decision.slot_valid[:, None], positions, 0).astype(jnp.int32)
    return kept, positions, decision.slot_valid
