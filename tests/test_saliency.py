"""Hand-computed cases for tfs_jax/saliency.py and the reference ops it calls (algorithm §1-3)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfs_jax
from tfs_jax.kernels import box_sum
from tfs_jax.kernels import window_contrast


def _one_hot_frames():
    """Frame 0 holds a distinct one-hot vector per position; frame 1 is frame 0 moved one
    token to the right (column 0 of frame 1 is new content: a zero vector)."""
    h, w = 3, 4
    eye = np.eye(h * w, dtype=np.float32).reshape(h, w, h * w)
    f1 = np.zeros_like(eye)
    f1[:, 1:] = eye[:, :-1]
    return np.stack([eye, f1])


def test_motion_sign_for_a_shift_to_the_right():
    tokens = _one_hot_frames()
    motion, has = tfs_jax.motion_vectors(tokens)
    # A token at w in frame 1 was at w - 1 in frame 0: its best candidate sits at dw = -1.
    np.testing.assert_array_equal(motion[1, :, 1:], np.broadcast_to([0, -1], (3, 3, 2)))
    # Column 0 is a zero vector: every cosine is 0, so the stay bias wins.
    np.testing.assert_array_equal(motion[1, :, 0], 0)
    np.testing.assert_array_equal(motion[0], 0)
    assert not has[0].any() and has[1].all()


def test_motion_shift_down_and_left():
    rng = np.random.default_rng(0)
    f0 = rng.normal(size=(5, 5, 8)).astype(np.float32)
    f1 = np.roll(f0, shift=(1, -1), axis=(0, 1))  # content moves down one, left one
    motion, _ = tfs_jax.motion_vectors(np.stack([f0, f1]))
    # Interior tokens whose source is inside the grid: source at (h - 1, w + 1).
    np.testing.assert_array_equal(motion[1, 1:, :-1], np.broadcast_to([-1, 1], (4, 4, 2)))


def test_identical_frames_do_not_move_and_stay_bias_decides_ties():
    rng = np.random.default_rng(1)
    frame = rng.normal(size=(4, 4, 6)).astype(np.float32)
    frame[1, 2] = frame[1, 1]  # a neighbour identical to the token itself
    motion, has = tfs_jax.motion_vectors(np.stack([frame, frame, frame]))
    np.testing.assert_array_equal(motion, 0)
    np.testing.assert_array_equal(has, [[[False] * 4] * 4] + [[[True] * 4] * 4] * 2)
    # Without the bias the tie between (0, -1) and (0, 0) goes to the first in row-major order.
    motion, _ = tfs_jax.motion_vectors(np.stack([frame, frame]), stay_bias=0.0)
    np.testing.assert_array_equal(motion[1, 1, 2], [0, -1])


def test_motion_ignores_invalid_candidates_and_previous_padding():
    tokens = _one_hot_frames()
    valid = np.ones((2, 3, 4), bool)
    valid[0, 1, 0] = False  # the source of token (1, 1, 1)
    motion, has = tfs_jax.motion_vectors(tokens, valid)
    assert has[1, 1, 1] and tuple(np.asarray(motion[1, 1, 1])) != (0, -1)
    valid[0] = False  # no valid frame before: no candidate anywhere
    motion, has = tfs_jax.motion_vectors(tokens, valid)
    assert not has.any() and not np.asarray(motion).any()


def test_dynamic_saliency_by_hand():
    motion = jnp.array([[[[0, 0], [1, 1], [0, 1]]]], jnp.int32)  # magnitudes 0, sqrt 2, 1
    valid = jnp.ones((1, 1, 3), bool)
    s = tfs_jax.dynamic_saliency(motion, valid, window=(0, 0, 1))
    r2 = math.sqrt(2)
    np.testing.assert_allclose(s[0, 0], [r2 / 2, (r2 + 1) / 3, (r2 + 1) / 2], rtol=1e-6)
    s = tfs_jax.dynamic_saliency(motion, valid.at[0, 0, 1].set(False), window=(0, 0, 1))
    np.testing.assert_allclose(s[0, 0], [0.0, 0.0, 1.0], rtol=1e-6)


def test_dynamic_saliency_radius_two_magnitudes():
    motion = jnp.array([[[[2, 1], [-2, -2], [0, 0]]]], jnp.int32)  # sqrt 5, sqrt 8, 0
    s = tfs_jax.dynamic_saliency(motion, jnp.ones((1, 1, 3), bool), window=(0, 0, 0), radius=2)
    np.testing.assert_allclose(s[0, 0], [math.sqrt(5), math.sqrt(8), 0.0], rtol=1e-6)


def test_box_sum_counts_and_sums_by_hand():
    x = jnp.arange(1.0, 7.0).reshape(1, 2, 3)
    valid = jnp.array([[[1, 1, 1], [1, 0, 1]]], bool)
    sums, counts = box_sum(x, valid, (0, 1, 1))
    np.testing.assert_array_equal(counts[0], [[3, 5, 3], [3, 5, 3]])
    np.testing.assert_array_equal(sums[0], [[1 + 2 + 4, 1 + 2 + 3 + 4 + 6, 2 + 3 + 6]] * 2)


@pytest.mark.parametrize("radius", [(0, 0, 4), (5, 1, 0), (1, 9, 9)])
def test_box_sum_large_radius_matches_brute_force(radius):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5, 7, 2)).astype(np.float32)
    valid = rng.random((6, 5, 7)) > 0.3
    x[~valid] = np.nan
    sums, counts = box_sum(jnp.asarray(x), jnp.asarray(valid), radius)
    xt = np.where(valid[..., None], x, 0.0)
    rt, rh, rw = radius
    for t, h, w in [(0, 0, 0), (3, 2, 3), (5, 4, 6), (2, 1, 5)]:
        win = np.s_[max(t - rt, 0): t + rt + 1, max(h - rh, 0): h + rh + 1, max(w - rw, 0): w + rw + 1]
        np.testing.assert_allclose(sums[t, h, w], xt[win].sum((0, 1, 2)), atol=1e-5)
        assert counts[t, h, w] == valid[win].sum()


def test_regional_saliency_by_hand():
    v = jnp.array([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]]])
    valid = jnp.ones((1, 1, 4), bool)
    raw, count = window_contrast(v, valid, center_radius=(0, 0, 0), surround_radius=(0, 0, 1))
    # Surround means: (0,1); (1,.5); (1,.5); (1,1).
    expected_raw = [1.0, 1 - 0.5 / math.sqrt(1.25), 1 - 1.5 / (math.sqrt(2) * math.sqrt(1.25)), 1 - 1 / math.sqrt(2)]
    np.testing.assert_allclose(raw[0, 0], expected_raw, rtol=1e-5)
    np.testing.assert_array_equal(count[0, 0], [1, 2, 2, 1])
    # Confidence minmax(log(1 + [1, 2, 2, 1])) = [0, 1, 1, 0]; median of raw = mean of middle two.
    median = np.median(expected_raw)
    s = tfs_jax.regional_saliency(v, valid, center_radius=(0, 0, 0), surround_radius=(0, 0, 1))
    np.testing.assert_allclose(s[0, 0], [median, expected_raw[1], expected_raw[2], median], rtol=1e-5)


def test_regional_empty_surround_gives_zero_raw_and_uniform_confidence():
    v = jnp.ones((1, 2, 2, 3))
    raw, count = window_contrast(v, jnp.ones((1, 2, 2), bool), center_radius=(1, 1, 1), surround_radius=(1, 1, 1))
    assert not np.asarray(raw).any() and not np.asarray(count).any()
    # Constant counts give confidence 1 everywhere: S_R = raw.
    s = tfs_jax.regional_saliency(v, center_radius=(1, 1, 1), surround_radius=(1, 1, 1))
    np.testing.assert_array_equal(s, 0.0)


def test_focal_saliency_softmax_weights_by_hand():
    v = jnp.array([[[[1.0, 0.0], [1.0, 0.5], [0.0, 1.0]]]])
    valid = jnp.ones((1, 1, 3), bool)
    raw, count = tfs_jax.kernels.focal_reconstruction(v, valid, 1.0)
    n1 = math.hypot(1.0, 0.5)
    c0, c2 = 1.0 / n1, 0.5 / n1  # cosines of token 1 to its two neighbours
    w0 = math.exp(c0) / (math.exp(c0) + math.exp(c2))
    vhat = np.array([w0, 1 - w0])
    raw1 = 1 - (vhat @ [1.0, 0.5]) / (n1 * np.linalg.norm(vhat))
    # Tokens 0 and 2 have one neighbour (token 1): weight 1, v_hat = v_1.
    raw0, raw2 = 1 - 1 / n1, 1 - 0.5 / n1
    np.testing.assert_allclose(raw[0, 0], [raw0, raw1, raw2], rtol=1e-5)
    np.testing.assert_array_equal(count[0, 0], [1, 2, 1])
    s = tfs_jax.focal_saliency(v, valid)
    median = np.median([raw0, raw1, raw2])
    np.testing.assert_allclose(s[0, 0], [median, raw1, median], rtol=1e-5)


def test_focal_temperature_sharpens_weights():
    v = jnp.array([[[[1.0, 0.0], [1.0, 0.5], [0.0, 1.0]]]])
    raw, _ = tfs_jax.kernels.focal_reconstruction(v, jnp.ones((1, 1, 3), bool), 1e-3)
    # At a tiny temperature the closer neighbour (token 0) takes all the weight.
    np.testing.assert_allclose(raw[0, 0, 1], 1 - 1 / math.hypot(1.0, 0.5), rtol=1e-5)


def test_focal_isolated_token_is_zero_and_nan_padding_does_not_leak():
    v = np.ones((1, 3, 3, 4), np.float32)
    v[0, 1, 1] = [1, 2, 3, 4]
    valid = np.zeros((1, 3, 3), bool)
    valid[0, 1, 1] = True
    v[~valid] = np.nan
    raw, count = tfs_jax.kernels.focal_reconstruction(jnp.nan_to_num(jnp.asarray(v)), jnp.asarray(valid), 1.0)
    assert float(raw[0, 1, 1]) == 0.0 and int(count[0, 1, 1]) == 0
    s = tfs_jax.focal_saliency(v, valid)
    assert np.isfinite(np.asarray(s)).all() and float(s[0, 1, 1]) == 0.0


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("stage", ["motion_vectors", "regional_saliency", "focal_saliency"])
def test_nonfinite_valid_tokens_are_padding_in_every_stage(stage, jit):
    """One NaN (or inf) element in a valid token: each public stage gives exactly what it
    gives with that token masked, and no NaN (algorithm §Notation)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5, 6, 24)).astype(np.float32)
    masked = np.ones((4, 5, 6), bool)
    for j, (t, h, w) in enumerate([(1, 2, 3), (2, 0, 0), (3, 4, 5), (0, 1, 1), (2, 2, 2)]):
        x[t, h, w, (7 * j) % 24] = (np.nan, np.inf, -np.inf)[j % 3]
        masked[t, h, w] = False
    fn = getattr(tfs_jax, stage)
    fn = jax.jit(fn) if jit else fn
    got, want = fn(jnp.asarray(x)), fn(jnp.asarray(x), masked)
    for g, w_ in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g, w_)
        assert not np.isnan(np.asarray(g, np.float32)).any()
