"""Hand-computed cases for tfs_jax/primitives.py (algorithm §0)."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfs_jax import primitives as P


def test_cosine_hand_values_and_zero_vector():
    a = jnp.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    b = jnp.array([[4.0, 3.0], [1.0, 2.0], [-1.0, 0.0]])
    np.testing.assert_allclose(P.cosine(a, b), [24 / 25, 0.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(P.cosine_distance(a, b), [1 / 25, 1.0, 2.0], rtol=1e-6)


def test_cosine_floor_is_1e6():
    # |a| = 1e-7 is floored to 1e-6: cos = (1e-7 * 1) / (1e-6 * 1) = 0.1, not 1.
    a = jnp.array([1e-7, 0.0])
    b = jnp.array([1.0, 0.0])
    np.testing.assert_allclose(P.cosine(a, b), 0.1, rtol=1e-5)


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.95, 1.0])
def test_masked_quantile_matches_numpy_linear_on_valid_entries(q):
    x = jnp.array([5.0, -1.0, 7.0, 2.0, 100.0, 3.0, 0.5])
    valid = jnp.array([1, 1, 1, 1, 0, 1, 1], bool)
    expected = np.quantile(np.asarray(x)[np.asarray(valid)], q)
    np.testing.assert_allclose(P.masked_quantile(x, valid, q), expected, rtol=1e-6)


def test_masked_quantile_by_hand_and_edge_cases():
    # n = 4, q = 0.5: pos = 1.5 -> 2 + (3 - 2) * 0.5 = 2.5.
    assert float(P.masked_quantile(jnp.array([4.0, 2.0, 3.0, 1.0]), jnp.ones(4, bool), 0.5)) == 2.5
    # One valid value: the value itself; none: 0; NaN in padding never leaks.
    x = jnp.array([jnp.nan, 7.0, jnp.inf])
    assert float(P.masked_quantile(x, jnp.array([0, 1, 0], bool), 0.9)) == 7.0
    assert float(P.masked_quantile(x, jnp.zeros(3, bool), 0.9)) == 0.0
    # Equal neighbours give exactly that value (an exact order statistic, never a near-tie).
    x = jnp.array([0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert float(P.masked_quantile(x, jnp.ones(10, bool), 0.9)) == np.float32(0.3)


def test_masked_quantile_rows():
    x = jnp.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    valid = jnp.array([[1, 1, 1], [1, 0, 1]], bool)
    np.testing.assert_allclose(P.masked_quantile(x, valid, 0.5), [2.0, 20.0])


def test_masked_minmax_by_hand_and_constant_rules():
    x = jnp.array([2.0, 4.0, 3.0, 99.0])
    valid = jnp.array([1, 1, 1, 0], bool)
    np.testing.assert_allclose(P.masked_minmax(x, valid, constant=0.0), [0.0, 1.0, 0.5, 0.0])
    flat = jnp.array([5.0, 5.0 + 4e-6, 5.0])  # spread 4e-6 <= 1e-6 * 5: constant
    np.testing.assert_array_equal(P.masked_minmax(flat, jnp.ones(3, bool), constant=1.0), [1, 1, 1])
    np.testing.assert_array_equal(P.masked_minmax(flat, jnp.ones(3, bool), constant=0.0), [0, 0, 0])
    tiny = jnp.array([0.0, 2e-6])  # spread 2e-6 > 1e-6 * max(1, 2e-6): not constant
    np.testing.assert_allclose(P.masked_minmax(tiny, jnp.ones(2, bool), constant=0.0), [0, 1])
    assert not np.isnan(P.masked_minmax(jnp.array([jnp.nan]), jnp.zeros(1, bool), constant=1.0)).any()


def test_round_half_up():
    np.testing.assert_array_equal(P.round_half_up(jnp.array([0.5, 1.5, 2.49, -0.5])), [1, 2, 2, 0])


def _share_exact(q, c, n):
    return (2 * q * c + n) // (2 * n)


def test_share_hand_values():
    # 3 * 1 / 4 = 0.75 -> 1; 3 * 2 / 4 = 1.5 -> 2 (half up); 1 * 1 / 4 = 0.25 -> 0.
    np.testing.assert_array_equal(P.share(jnp.array([3, 3, 1]), jnp.array([1, 2, 1]), jnp.array([4, 4, 4])), [1, 2, 0])
    assert int(P.share(5, 3, 0)) == 0


def test_share_is_exact_beyond_int32_products():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 2**25, size=4000)
    q = (rng.random(4000) * n).astype(np.int64)
    c = (rng.random(4000) * n).astype(np.int64)
    n = np.concatenate([n, [2**25 - 1, 40_000, 7_001, 65_536]])
    q = np.concatenate([q, [2**25 - 2, 39_999, 7_000, 65_535]])
    c = np.concatenate([c, [2**25 - 3, 20_000, 3_500, 32_768]])
    got = np.asarray(P.share(jnp.asarray(q, jnp.int32), jnp.asarray(c, jnp.int32), jnp.asarray(n, jnp.int32)))
    expected = np.array([_share_exact(int(a), int(b), int(m)) for a, b, m in zip(q, c, n)])
    np.testing.assert_array_equal(got, expected)


def test_split_quota_telescopes_and_stays_within_one():
    rng = np.random.default_rng(1)
    sizes = rng.integers(0, 50, size=(64, 7))
    sizes[3] = 0  # an empty parent
    quota = (rng.random(64) * sizes.sum(1)).astype(np.int64)
    got = np.asarray(P.split_quota(jnp.asarray(quota, jnp.int32), jnp.asarray(sizes, jnp.int32)))
    np.testing.assert_array_equal(got.sum(1), quota)
    assert (got <= sizes).all() and (got >= 0).all()
    total = np.maximum(sizes.sum(1, keepdims=True), 1)
    assert (np.abs(got - quota[:, None] * sizes / total) < 1).all()
    # By hand: Q = 3 over four children of one: cumulative shares 1, 2, 2, 3.
    np.testing.assert_array_equal(P.split_quota(jnp.int32(3), jnp.array([1, 1, 1, 1])), [1, 1, 0, 1])


def test_split_quota_matches_fraction_arithmetic():
    sizes = [7, 0, 13, 2, 9]
    quota = 11
    n = sum(sizes)
    cum = np.cumsum(sizes)
    exact = [math.floor(Fraction(quota * c, n) + Fraction(1, 2)) for c in cum]
    expected = np.diff([0] + exact)
    np.testing.assert_array_equal(P.split_quota(jnp.int32(quota), jnp.array(sizes)), expected)


def test_primitives_jit_and_vmap():
    x = jnp.arange(12.0).reshape(3, 4)
    valid = jnp.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]], bool)
    batched = jax.vmap(lambda a, m: P.masked_quantile(a, m, 0.5))(x, valid)
    np.testing.assert_allclose(jax.jit(P.masked_quantile)(x, valid, 0.5), batched)
    np.testing.assert_allclose(batched, [1.5, 5.0, 11.0])
