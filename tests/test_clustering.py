"""tfs_jax/clustering.py: features by hand, k-means behaviour (SPEC 5-6)."""

import jax
import jax.numpy as jnp
import numpy as np

import tfs_jax


def test_features_by_hand():
    t, h, w = 3, 2, 3
    saliency = np.zeros((t, h, w, 3), np.float32)
    saliency[..., 0] = np.arange(t * h * w).reshape(t, h, w)  # minmax -> i / 17
    saliency[..., 1] = 5.0  # constant -> 0
    saliency[..., 2] = np.arange(t * h * w).reshape(t, h, w) % 2  # 0/1
    segment = jnp.array([0, 0, 1])
    f = tfs_jax.clustering_features(jnp.asarray(saliency), segment, jnp.ones((t, h, w), bool),
                                    factor_weights=(2.0, 1.0, 0.5))
    np.testing.assert_allclose(f[..., 0], 2 * np.arange(18).reshape(t, h, w) / 17, rtol=1e-6)
    np.testing.assert_array_equal(f[..., 1], 0.0)
    np.testing.assert_allclose(f[..., 2], 0.5 * (np.arange(18).reshape(t, h, w) % 2))
    # t_n: segment 0 spans frames 0-1 -> 0, 1; segment 1 is frame 2 alone -> 0.
    np.testing.assert_array_equal(f[:, 0, 0, 3], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(f[0, :, 0, 4], [0.0, 1.0])
    np.testing.assert_array_equal(f[0, 0, :, 5], [0.0, 0.5, 1.0])


def test_features_segment_span_skips_padding_frames():
    saliency = jnp.ones((5, 1, 1, 3))
    segment = jnp.array([0, -1, 0, 1, 1])
    valid = jnp.array([True, False, True, True, True])[:, None, None]
    f = tfs_jax.clustering_features(saliency, segment, valid)
    # Segment 0 spans frames 0..2 (t_end - t_start = 2); frame 1 is padding.
    np.testing.assert_array_equal(f[:, 0, 0, 3], [0.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(f[1], 0.0)


def _two_blobs():
    """One segment of 2 frames, 4x4: features with two far-apart groups."""
    f = np.zeros((2, 4, 4, 6), np.float32)
    f[:, :, :2, 0] = 0.0
    f[:, :, 2:, 0] = 10.0
    return jnp.asarray(f)


def test_kmeans_separates_obvious_groups_and_stays_in_segment():
    f = _two_blobs()
    valid = jnp.ones((2, 4, 4), bool)
    labels = tfs_jax.segmented_kmeans(f, jnp.array([0, 0]), valid, jax.random.key(3), num_clusters=2, iters=5)
    left, right = np.asarray(labels[:, :, :2]), np.asarray(labels[:, :, 2:])
    assert len(np.unique(left)) == 1 and len(np.unique(right)) == 1 and left[0, 0, 0] != right[0, 0, 0]
    # Two segments: each has its own k centroids, labels are per segment.
    labels = tfs_jax.segmented_kmeans(f, jnp.array([0, 1]), valid, jax.random.key(3), num_clusters=2, iters=5)
    for t in range(2):
        assert len(np.unique(labels[t, :, :2])) == 1 and len(np.unique(labels[t, :, 2:])) == 1
        assert labels[t, 0, 0] != labels[t, 0, 3]


def test_kmeans_labels_are_nearest_final_centroid_and_padding_is_minus_one():
    rng = np.random.default_rng(4)
    f = jnp.asarray(rng.random((3, 3, 4, 6)), jnp.float32)
    valid = jnp.asarray(rng.random((3, 3, 4)) > 0.2)
    segment = jnp.array([0, 0, 1])
    key = jax.random.key(0)
    labels = tfs_jax.segmented_kmeans(f, segment, valid, key, num_clusters=3, iters=4)
    assert (np.asarray(labels)[~np.asarray(valid)] == -1).all()
    assert ((np.asarray(labels)[np.asarray(valid)] >= 0) & (np.asarray(labels)[np.asarray(valid)] < 3)).all()
    # Recompute by hand: seed, 4 Lloyd steps, assign.
    c = tfs_jax.kmeans_plus_plus(f, segment, valid, key, num_clusters=3)
    for _ in range(4):
        c = tfs_jax.update_centroids(f, segment, valid, tfs_jax.assign_clusters(f, segment, c), c)
    expected = jnp.where(valid, tfs_jax.assign_clusters(f, segment, c), -1)
    np.testing.assert_array_equal(labels, expected)


def test_kmeans_plus_plus_picks_tokens_of_the_segment():
    rng = np.random.default_rng(5)
    f = jnp.asarray(rng.random((2, 2, 3, 6)), jnp.float32)
    valid = jnp.ones((2, 2, 3), bool).at[1, 0, 0].set(False)
    c = tfs_jax.kmeans_plus_plus(f, jnp.array([0, 1]), valid, jax.random.key(1), num_clusters=4)
    for s in range(2):
        members = np.asarray(f[s])[np.asarray(valid[s])]
        for centroid in np.asarray(c[s]):
            assert np.any(np.all(members == centroid, axis=-1))
    # Segment 0 has 6 tokens: its first 4 draws are distinct tokens (D^2 > 0 excludes repeats).
    assert len({tuple(x) for x in np.asarray(c[0])}) == 4


def test_kmeans_small_segment_and_zero_iterations():
    f = jnp.zeros((1, 1, 2, 6)).at[0, 0, 1, 0].set(1.0)
    valid = jnp.ones((1, 1, 2), bool)
    labels = tfs_jax.segmented_kmeans(f, jnp.array([0]), valid, jax.random.key(0), num_clusters=5, iters=0)
    assert labels[0, 0, 0] != labels[0, 0, 1]  # two tokens, five clusters: each its own


def test_kmeans_draws_do_not_depend_on_appended_padding():
    rng = np.random.default_rng(6)
    f = rng.random((3, 2, 2, 6)).astype(np.float32)
    fp = np.concatenate([f, np.zeros((2, 2, 2, 6), np.float32)])
    valid = np.ones((5, 2, 2), bool)
    valid[3:] = False
    key = jax.random.key(7)
    a = tfs_jax.kmeans_plus_plus(jnp.asarray(f), jnp.array([0, 0, 1]), jnp.ones((3, 2, 2), bool), key, num_clusters=3)
    b = tfs_jax.kmeans_plus_plus(jnp.asarray(fp), jnp.array([0, 0, 1, -1, -1]), jnp.asarray(valid), key, num_clusters=3)
    np.testing.assert_array_equal(a, b[:3])
