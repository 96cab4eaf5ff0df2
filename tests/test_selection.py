"""tfs_jax/selection.py and budget.py: quotas, strata, ranks, coalescing (algorithm §7-9)."""

import jax.numpy as jnp
import numpy as np
import pytest

import tfs_jax
from tfs_jax.selection import rank_in_group


@pytest.mark.parametrize(
    "n, ratio, expected",
    [(10, 0.25, 3), (10, 0.35, 4), (7, 0.35, 2), (1, 0.01, 1), (0, 0.5, 0), (3, 1.0, 3), (6, 0.25, 2),
     (2, 0.25, 1), (65_537, 0.3333, 21_843), (10_000, 0.0001, 1)],
)
def test_budget_by_hand(n, ratio, expected):
    # 10 * 1/4 = 2.5 -> 3 (half up); 10 * 7/20 = 3.5 -> 4; 7 * 7/20 = 2.45 -> 2; 6/4 = 1.5 -> 2.
    assert tfs_jax.static_budget(n, ratio) == expected
    assert int(tfs_jax.video_budget(jnp.int32(n), ratio)) == expected


def test_video_budget_matches_python_on_many_counts():
    ns = np.arange(0, 5000, 7)
    for ratio in (0.1, 0.25, 0.35, 0.5, 0.999):
        got = np.asarray(tfs_jax.video_budget(jnp.asarray(ns, jnp.int32), ratio))
        np.testing.assert_array_equal(got, [tfs_jax.static_budget(int(n), ratio) for n in ns])


def test_strata_ties_go_to_the_lower_factor():
    f = jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.1]])
    f = jnp.concatenate([f, jnp.zeros((4, 3))], axis=-1)
    np.testing.assert_array_equal(tfs_jax.token_strata(f), [0, 1, 0, 2])


def test_rank_in_group_descending_with_index_ties_and_signed_zero():
    group = jnp.array([1, 0, 1, 1, 0, 1])
    score = jnp.array([0.5, 0.0, 0.9, 0.5, -0.0, 0.1])
    # Group 1: 0.9 (idx 2), 0.5 (idx 0), 0.5 (idx 3), 0.1 (idx 5); group 0: +0 and -0 tie.
    np.testing.assert_array_equal(rank_in_group(group, score), [1, 0, 0, 2, 1, 3])


def _select(saliency, features, cluster, quota, k=2, eligible=None):
    t, h, w = cluster.shape
    eligible = jnp.ones((t, h, w), bool) if eligible is None else eligible
    return tfs_jax.stratified_select(saliency, features, jnp.zeros((t,), jnp.int32), cluster, eligible,
                                     jnp.int32(quota), num_clusters=k)


def test_stratified_select_by_hand():
    # One frame of 8 tokens, one segment, clusters [0,0,0,0,1,1,1,1].
    # Strata from features: cluster 0 -> M, M, R, F; cluster 1 -> M, M, M, M.
    strata = np.array([0, 0, 1, 2, 0, 0, 0, 0])
    features = np.zeros((1, 1, 8, 6), np.float32)
    features[0, 0, np.arange(8), strata] = 1.0
    saliency = np.zeros((1, 1, 8, 3), np.float32)
    saliency[0, 0, :, 0] = [0.1, 0.7, 0, 0, 0.3, 0.9, 0.3, 0.2]
    saliency[0, 0, :, 1] = [0, 0, 0.5, 0, 0, 0, 0, 0]
    saliency[0, 0, :, 2] = [0, 0, 0, 0.6, 0, 0, 0, 0]
    cluster = jnp.asarray([0, 0, 0, 0, 1, 1, 1, 1]).reshape(1, 1, 8)
    # Quota 3 over clusters of 4 and 4: cumulative shares 2 (1.5 half up), 3 -> [2, 1].
    # Cluster 0 quota 2 over strata sizes [2, 1, 1]: shares 1, 2(1.5), 2 -> [1, 1, 0]:
    #   keep the top M token (idx 1: .7) and the R token (idx 2).
    # Cluster 1 quota 1 over [4, 0, 0]: keep the top M (idx 5: .9).
    keep = _select(jnp.asarray(saliency), jnp.asarray(features), cluster, 3)
    np.testing.assert_array_equal(np.flatnonzero(keep), [1, 2, 5])
    # Quota 6: clusters [3, 3]. Cluster 0: shares of 3 over cumulative sizes [2, 3, 4] of 4
    # are 1.5 -> 2, 2.25 -> 2, 3, so strata get [2, 0, 1]. Cluster 1: top 3 by S_M, the tie
    # 0.3 / 0.3 going to the lower index (4 before 6).
    keep = _select(jnp.asarray(saliency), jnp.asarray(features), cluster, 6)
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 1, 3, 4, 5, 6])


def test_stratum_quotas_telescope_exactly():
    rng = np.random.default_rng(0)
    sizes = jnp.asarray(rng.integers(0, 9, size=(5, 4, 3)), jnp.int32)
    total = int(sizes.sum())
    for quota in (0, 1, total // 3, total - 1, total):
        q = np.asarray(tfs_jax.stratum_quotas(jnp.int32(quota), sizes))
        assert q.sum() == quota and (q <= np.asarray(sizes)).all() and (q >= 0).all()


def test_static_tokens_need_a_candidate():
    motion = jnp.array([[0, 0], [0, 1], [0, 0]]).reshape(1, 1, 3, 2)
    has = jnp.array([True, True, False]).reshape(1, 1, 3)
    np.testing.assert_array_equal(tfs_jax.static_tokens(motion, has)[0, 0], [True, False, False])
