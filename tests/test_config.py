"""tfs_jax/config.py: validation (algorithm §10), the pytree split and the exact ratio."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfs_jax import TFSConfig
from tfs_jax import retain_fraction


def test_defaults_match_spec_table():
    cfg = TFSConfig()
    assert (cfg.retain_ratio, cfg.num_clusters, cfg.kmeans_iters, cfg.motion_radius) == (0.25, 20, 20, 1)
    assert (cfg.motion_window, cfg.center_radius, cfg.surround_radius) == ((1, 1, 1), (1, 1, 1), (1, 2, 2))
    assert (cfg.coalesce, cfg.refill) == (True, False)
    np.testing.assert_array_equal(cfg.factor_weights, [1, 1, 1])
    assert cfg.factor_weights.dtype == np.float32
    np.testing.assert_allclose(
        [cfg.stay_bias, cfg.focal_temperature, cfg.abs_threshold, cfg.rel_quantile],
        [1e-4, 1.0, 0.6, 0.9], rtol=1e-6,
    )


def test_traced_fields_are_leaves_and_static_fields_metadata():
    cfg = TFSConfig(num_clusters=5)
    leaves, treedef = jax.tree_util.tree_flatten(cfg)
    assert len(leaves) == 5
    other = TFSConfig(num_clusters=5, factor_weights=(0, 1, 2), stay_bias=0.5)
    assert jax.tree_util.tree_structure(other) == treedef
    assert jax.tree_util.tree_structure(TFSConfig(num_clusters=6)) != treedef
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert rebuilt.num_clusters == 5 and rebuilt.surround_radius == (1, 2, 2)


def test_tree_map_over_config_does_not_validate_leaves():
    # JAX rebuilds configs with non-numbers as leaves (axis specs, sentinels).
    specs = jax.tree_util.tree_map(lambda _: None, TFSConfig())
    assert specs.factor_weights is None


def test_replace_validates():
    with pytest.raises(ValueError, match="num_clusters"):
        TFSConfig().replace(num_clusters=0)


def test_traced_replace_inside_vmap():
    cfg = TFSConfig()
    out = jax.vmap(lambda w: cfg.replace(factor_weights=w).factor_weights.sum())(jnp.eye(3))
    np.testing.assert_array_equal(out, [1, 1, 1])


@pytest.mark.parametrize(
    "ratio, frac",
    [(0.25, Fraction(1, 4)), (0.35, Fraction(7, 20)), (float(np.float32(0.35)), Fraction(7, 20)),
     (1.0, Fraction(1)), (1 / 3, Fraction(1, 3)), (0.00015, Fraction(3, 20000).limit_denominator(10_000))],
)
def test_ratio_is_read_as_a_fraction(ratio, frac):
    assert retain_fraction(ratio) == frac
    assert TFSConfig(retain_ratio=ratio).ratio_fraction == frac


BAD_FIELDS = [
    ("retain_ratio", 0.0), ("retain_ratio", 1.5), ("retain_ratio", -0.1), ("retain_ratio", float("nan")),
    ("retain_ratio", float("inf")), ("retain_ratio", True), ("retain_ratio", "0.5"), ("retain_ratio", 1e-6),
    ("num_clusters", 0), ("num_clusters", 2.0), ("num_clusters", True),
    ("kmeans_iters", -1), ("kmeans_iters", 1.5),
    ("motion_radius", -1), ("motion_radius", 1.0), ("motion_radius", True),
    ("motion_window", (1, 1)), ("motion_window", (1, -1, 1)), ("motion_window", (1, 1.0, 1)),
    ("motion_window", 1),
    ("center_radius", (1, 3, 1)), ("surround_radius", (0, 2, 2)), ("surround_radius", (1, 2, 2, 2)),
    ("coalesce", 1), ("refill", "yes"),
    ("factor_weights", (1, 1)), ("factor_weights", (1, -1, 1)), ("factor_weights", (0, 0, 0)),
    ("factor_weights", (1, float("nan"), 1)), ("factor_weights", (1, float("inf"), 1)),
    ("stay_bias", float("nan")), ("stay_bias", (1e-4, 1e-4)), ("stay_bias", True),
    ("focal_temperature", 1e-7), ("focal_temperature", 0.0), ("focal_temperature", float("inf")),
    ("abs_threshold", float("-inf")), ("abs_threshold", 1e39),
    ("rel_quantile", -0.01), ("rel_quantile", 1.01), ("rel_quantile", float("nan")),
]


@pytest.mark.parametrize("field, value", BAD_FIELDS)
def test_bad_field_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TFSConfig(**{field: value})


def test_refill_without_coalesce_is_refused():
    with pytest.raises(ValueError, match="refill"):
        TFSConfig(coalesce=False, refill=True)
    assert TFSConfig(refill=True).refill


def test_numpy_integers_and_bools_are_accepted():
    cfg = TFSConfig(num_clusters=np.int64(4), motion_window=(np.int32(0), 1, 1), coalesce=np.bool_(False))
    assert cfg.num_clusters == 4 and type(cfg.num_clusters) is int
    assert cfg.motion_window == (0, 1, 1) and cfg.coalesce is False
