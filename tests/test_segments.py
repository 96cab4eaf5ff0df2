"""Pace and change-points on hand-built S_M maps (algorithm §4, Eqs. 6-7)."""

import jax.numpy as jnp
import numpy as np

import tfs_jax


def _constant_frames(paces, h=2, w=3):
    return jnp.broadcast_to(jnp.asarray(paces, jnp.float32)[:, None, None], (len(paces), h, w))


def test_pace_is_the_95th_percentile_of_each_frame():
    s_m = jnp.arange(20.0).reshape(1, 4, 5)  # values 0..19: pos = 0.95 * 19 = 18.05
    pace, frame_valid = tfs_jax.pace_signal(s_m, jnp.ones((1, 4, 5), bool))
    np.testing.assert_allclose(pace, [18.05], rtol=1e-6)
    assert frame_valid.all()


def test_boundaries_by_hand():
    # P = [.1, .1, .5, .5, .7, .1]: dP = [0, 0, .4, 0, .2, .6]; T_rel = quantile(dP, .9) = .5.
    # Starts: frame 0, frame 4 (P > .6), frame 5 (dP = .6 > .5); frame 2 (dP = .4) is not.
    s_m = _constant_frames([0.1, 0.1, 0.5, 0.5, 0.7, 0.1])
    seg = tfs_jax.segment_frames(s_m, jnp.ones(s_m.shape, bool))
    np.testing.assert_array_equal(seg, [0, 0, 0, 0, 1, 2])


def test_pace_runs_over_valid_frames_only():
    # Frame 3 is padding: valid paces [.1, .1, .5, .7, .1], dP = [0, 0, .4, .2, .6],
    # T_rel = .4 + (.6 - .4) * .6 = .52: starts at frames 0, 4 (P > .6) and 5 (.6 > .52).
    s_m = _constant_frames([0.1, 0.1, 0.5, 9.0, 0.7, 0.1])
    valid = np.ones(s_m.shape, bool)
    valid[3] = False
    seg = tfs_jax.segment_frames(s_m, jnp.asarray(valid))
    np.testing.assert_array_equal(seg, [0, 0, 0, -1, 1, 2])


def test_thresholds_are_traced_knobs():
    s_m = _constant_frames([0.1, 0.1, 0.5, 0.5, 0.7, 0.1])
    valid = jnp.ones(s_m.shape, bool)
    seg = tfs_jax.segment_frames(s_m, valid, abs_threshold=jnp.float32(0.05), rel_quantile=1.0)
    np.testing.assert_array_equal(seg, [0, 1, 2, 3, 4, 5])  # every pace exceeds 0.05
    seg = tfs_jax.segment_frames(s_m, valid, abs_threshold=10.0, rel_quantile=0.0)
    # T_rel = min(dP) = 0: every frame whose pace changed starts a segment.
    np.testing.assert_array_equal(seg, [0, 0, 1, 1, 2, 3])


def test_equal_pace_to_threshold_is_not_a_start():
    # dP = [0, .3 x 9]: T_rel is exactly .3 (an order statistic), and .3 > .3 is false.
    s_m = _constant_frames([0.0, 0.3] * 5)
    seg = tfs_jax.segment_frames(s_m, jnp.ones(s_m.shape, bool), abs_threshold=0.6)
    np.testing.assert_array_equal(seg, 0)


def test_partially_valid_frame_uses_its_valid_tokens():
    s_m = jnp.array([[[0.0, 5.0]], [[0.0, 0.0]]])
    valid = jnp.array([[[True, False]], [[True, True]]])
    pace, _ = tfs_jax.pace_signal(s_m, valid)
    np.testing.assert_array_equal(pace, [0.0, 0.0])
