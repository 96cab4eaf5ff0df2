"""Property tests (hypothesis, derandomised): invariants of tfs_prune over many inputs.

Shapes and static config are fixed so that every example reuses one compiled program;
hypothesis varies contents, masks, scales and keys.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import tfs_jax
from tfs_jax import TFSConfig

SHAPE = (5, 4, 5, 6)
EXTRA_FRAMES = 2
CFG = TFSConfig(num_clusters=3, kmeans_iters=3)
NO_COALESCE = CFG.replace(coalesce=False)

seeds = st.integers(0, 2**31 - 1)


def _tokens(seed, scale=1.0, static_share=0.0):
    """Random tokens; a share of frames repeats the previous one (static content)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=SHAPE).astype(np.float32)
    for t in range(1, SHAPE[0]):
        if rng.random() < static_share:
            x[t] = x[t - 1]
    return (x * np.float32(scale)).astype(np.float32)


def _mask(seed, density):
    rng = np.random.default_rng(seed + 1)
    return rng.random(SHAPE[:3]) < density


@given(seeds, st.floats(0.3, 1.0))
def test_kept_count_equals_budget_before_coalescing(seed, density):
    valid = _mask(seed, density)
    r = tfs_jax.tfs_prune(_tokens(seed), NO_COALESCE, valid=valid)
    assert int(r.num_kept) == tfs_jax.static_budget(int(valid.sum()), CFG.retain_ratio)
    assert not np.asarray(r.keep_mask)[~valid].any()


@given(seeds, st.floats(0.0, 1.0))
def test_coalescing_only_removes_static_tokens(seed, static_share):
    x = _tokens(seed, static_share=static_share)
    full = tfs_jax.tfs_prune(x, NO_COALESCE)
    r = tfs_jax.tfs_prune(x, CFG)
    static = np.asarray(full.has_candidate) & (np.asarray(full.motion) == 0).all(-1)
    np.testing.assert_array_equal(r.keep_mask, np.asarray(full.keep_mask) & ~static)


@given(st.lists(st.integers(0, 30), min_size=1, max_size=12), st.integers(0, 400))
def test_quotas_telescope(sizes, quota_seed):
    sizes = np.array(sizes + [0] * (-len(sizes) % 6), np.int32).reshape(2, -1, 3)
    quota = quota_seed % (int(sizes.sum()) + 1)
    q = np.asarray(tfs_jax.stratum_quotas(jnp.int32(quota), jnp.asarray(sizes)))
    assert q.sum() == quota and (0 <= q).all() and (q <= sizes).all()


@given(seeds, st.integers(-30, 30), st.booleans())
def test_no_nan_for_finite_input_of_any_scale(seed, exponent, zero):
    x = np.zeros(SHAPE, np.float32) if zero else _tokens(seed, scale=10.0**exponent)
    r = tfs_jax.tfs_prune(x, CFG)
    for leaf in jax.tree.leaves(r):
        assert np.isfinite(np.asarray(leaf, np.float64)).all()
    assert 1 <= int(r.num_kept) <= len(r.indices)


@given(seeds, st.floats(0.5, 1.0))
def test_padding_at_the_end_changes_nothing(seed, density):
    x = _tokens(seed, static_share=0.3)
    valid = _mask(seed, density)
    r = tfs_jax.tfs_prune(x, CFG, valid=valid)
    pad = np.full((EXTRA_FRAMES,) + SHAPE[1:], np.nan, np.float32)
    valid_p = np.concatenate([valid, np.zeros((EXTRA_FRAMES,) + SHAPE[1:3], bool)])
    rp = tfs_jax.tfs_prune(np.concatenate([x, pad]), CFG, valid=valid_p)
    t = SHAPE[0]
    for field in ("keep_mask", "saliency", "motion", "cluster", "has_candidate"):
        np.testing.assert_array_equal(getattr(rp, field)[:t], getattr(r, field), err_msg=field)
    np.testing.assert_array_equal(rp.segment[:t], r.segment)
    assert (np.asarray(rp.segment[t:]) == -1).all() and int(rp.num_kept) == int(r.num_kept)
    n = int(r.num_kept)
    np.testing.assert_array_equal(rp.indices[:n], r.indices[:n])


@given(seeds, st.integers(0, 2**31 - 1))
def test_same_key_is_bit_identical(seed, key_seed):
    x = _tokens(seed)
    a = tfs_jax.tfs_prune(x, CFG, key=jax.random.key(key_seed))
    b = tfs_jax.tfs_prune(x, CFG, key=jax.random.key(key_seed))
    chex.assert_trees_all_equal(a, b)


@given(seeds)
def test_vmap_equals_the_loop(seed):
    batch = np.stack([_tokens(seed), _tokens(seed + 1, static_share=0.5), _tokens(seed + 2, scale=1e-3)])
    valid = np.stack([_mask(seed, 0.8), np.ones(SHAPE[:3], bool), _mask(seed + 2, 0.6)])
    out = jax.vmap(lambda x, m: tfs_jax.tfs_prune(x, CFG, valid=m))(batch, valid)
    for b in range(3):
        chex.assert_trees_all_equal(jax.tree.map(lambda a: a[b], out), tfs_jax.tfs_prune(batch[b], CFG, valid=valid[b]))
