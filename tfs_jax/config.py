"""`TFSConfig`: every knob of the pruner, validated once, as a pytree (algorithm §10).

Static fields (radii, `k`, the ratio, flags) shape the compiled program and live in the
pytree's metadata. Traced fields (`factor_weights`, `stay_bias`, `focal_temperature`,
`abs_threshold`, `rel_quantile`) are float32 array leaves, so a sweep over them reuses one
compiled function and can be `vmap`ped:

    cfg = TFSConfig(retain_ratio=0.25)
    sweep = jax.vmap(lambda w: tfs_prune(tokens, cfg.replace(factor_weights=w)))
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

import jax
import numpy as np

from tfs_jax.budget import retain_fraction
from tfs_jax.checks import check_config_static
from tfs_jax.checks import check_config_traced

Radius3 = tuple[int, int, int]

_STATIC_FIELDS = (
    "retain_ratio",
    "num_clusters",
    "kmeans_iters",
    "motion_radius",
    "motion_window",
    "center_radius",
    "surround_radius",
    "coalesce",
    "refill",
)
_TRACED_FIELDS = (
    "factor_weights",
    "stay_bias",
    "focal_temperature",
    "abs_threshold",
    "rel_quantile",
)


@dataclasses.dataclass(frozen=True, eq=False)
class TFSConfig:
    """Hyper-parameters of the TFS-Pruner (algorithm §10); bad values raise `ValueError`.

    Attributes:
      retain_ratio: share of tokens to keep, in (0, 1]; read as a fraction p/q with
        q <= 10,000 (algorithm §7). Static: it sets the output size `K`.
      num_clusters: k of the per-segment k-means (algorithm §6).
      kmeans_iters: Lloyd iterations after k-means++ (0: labels from the initial centroids).
      motion_radius: search radius r of motion matching in frame t-1 (algorithm §1).
      motion_window: (rt, rh, rw) window of the S_M mean (Eq. 1).
      center_radius, surround_radius: windows of S_R (Eq. 2); the surround is the larger
        window minus the centre.
      coalesce: drop kept tokens that matched their previous frame in place (algorithm §9).
      refill: remove those static tokens before the budget instead of after (extension).
      factor_weights: (w_M, w_R, w_F) applied to the min-max normalised scores (algorithm §5).
      stay_bias: bonus of the zero-offset motion candidate (algorithm §1).
      focal_temperature: softmax temperature of the focal reconstruction (Eq. 5).
      abs_threshold: T_abs of the pace change-points (Eq. 7).
      rel_quantile: quantile of dP that gives T_rel (Eq. 7).
    """

    retain_ratio: float = 0.25
    num_clusters: int = 20
    kmeans_iters: int = 20
    motion_radius: int = 1
    motion_window: Radius3 = (1, 1, 1)
    center_radius: Radius3 = (1, 1, 1)
    surround_radius: Radius3 = (1, 2, 2)
    coalesce: bool = True
    refill: bool = False
    factor_weights: Any = (1.0, 1.0, 1.0)
    stay_bias: Any = 1e-4
    focal_temperature: Any = 1.0
    abs_threshold: Any = 0.6
    rel_quantile: Any = 0.9

    def __post_init__(self):
        static = check_config_static({name: getattr(self, name) for name in _STATIC_FIELDS})
        for name, value in static.items():
            object.__setattr__(self, name, value)
        for name in _TRACED_FIELDS:
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                value = value.astype(np.float32)
            else:
                value = check_config_traced(name, value)
            object.__setattr__(self, name, value)

    def replace(self, **changes) -> TFSConfig:
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def ratio_fraction(self) -> Fraction:
        """The retain ratio as the exact fraction p/q used for every budget (algorithm §7)."""
        return retain_fraction(self.retain_ratio)

    # Pytree protocol: static fields are metadata, traced fields are leaves. Unflattening
    # bypasses `__post_init__`, since JAX rebuilds configs with tracers, axis specs or
    # sentinels as leaves.
    def tree_flatten(self):
        leaves = tuple(getattr(self, name) for name in _TRACED_FIELDS)
        meta = tuple(getattr(self, name) for name in _STATIC_FIELDS)
        return leaves, meta

    @classmethod
    def tree_unflatten(cls, meta, leaves):
        obj = object.__new__(cls)
        for name, value in zip(_STATIC_FIELDS, meta):
            object.__setattr__(obj, name, value)
        for name, value in zip(_TRACED_FIELDS, leaves):
            object.__setattr__(obj, name, value)
        return obj


jax.tree_util.register_pytree_node(TFSConfig, TFSConfig.tree_flatten, TFSConfig.tree_unflatten)
