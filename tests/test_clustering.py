"""tfs_jax/clustering.py: features by hand, k-means behaviour (algorithm §5-6)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

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


# ----------------------------------------------------------------------------------------
# Algorithm §6 checked independently: Lloyd by plain numpy, k-means++ by its sampling law.


def numpy_lloyd(features, segment, valid, centroids, iters):
    """Algorithm §6's Lloyd loop written out in numpy float32, token by token: assign each valid
    token to the nearest of its segment's centroids (squared Euclidean, ties to the lower
    index), move each centroid to the mean of its tokens (an empty one stays), `iters`
    times; the labels are the assignment to the final centroids."""
    x = np.asarray(features, np.float32)
    c = np.array(centroids, np.float32)
    t, h, w, _ = x.shape

    def assign():
        labels = np.full((t, h, w), -1)
        for idx in zip(*np.nonzero(np.asarray(valid) & (np.asarray(segment) >= 0)[:, None, None])):
            dist = [float(np.sum((x[idx] - cen) ** 2)) for cen in c[segment[idx[0]]]]
            labels[idx] = dist.index(min(dist))  # the first minimum: ties to the lower index
        return labels

    for _ in range(iters):
        labels = assign()
        for s in range(c.shape[0]):
            for j in range(c.shape[1]):
                members = x[(labels == j) & (np.asarray(segment) == s)[:, None, None]]
                if len(members):
                    c[s, j] = members.sum(axis=0, dtype=np.float32) / np.float32(len(members))
    return assign()


def _dyadic_features():
    """Three segments of small dyadic values (exact in float32, so every tie is exact):
    segment 0 a line 0, 1, 2, 3 with its middle points equidistant from draws at the ends;
    segment 1 duplicated points (k-means++ repeats centroids, identical centroids tie and
    the later ones stay empty); segment 2 two tokens for four clusters."""
    f = np.zeros((4, 2, 3, 6), np.float32)
    f[0, 0, :, 0] = [0, 1, 2]
    f[0, 1, :, 0] = [3, 1, 2]
    f[1, :, :, 1] = 0.5
    f[1, 1, :2, 1] = 2.0
    f[2] = f[1]
    f[3, 0, 0, 2] = 1.0
    f[..., 3:] = 0.25  # coordinates: equal, so only the scores separate tokens
    valid = np.ones((4, 2, 3), bool)
    valid[3] = False
    valid[3, 0, :2] = True
    return f, np.array([0, 1, 1, 2]), valid


def test_lloyd_matches_numpy_with_ties_and_empty_clusters():
    f, segment, valid = _dyadic_features()
    for seed in range(6):
        key = jax.random.key(seed)
        for k, iters in ((2, 3), (4, 5), (3, 0)):
            init = tfs_jax.kmeans_plus_plus(f, segment, valid, key, num_clusters=k)
            got = tfs_jax.segmented_kmeans(f, segment, valid, key, num_clusters=k, iters=iters)
            want = numpy_lloyd(f, segment, valid, init, iters)
            np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}, k={k}, iters={iters}")
    # Segment 2 has two distinct tokens and four clusters: two labels used, two empty.
    labels = tfs_jax.segmented_kmeans(f, segment, valid, jax.random.key(0), num_clusters=4, iters=5)
    assert len(set(np.asarray(labels)[3, 0, :2].tolist())) == 2


POSITIONS = np.array([0.0, 1.0, 2.0, 4.0, 8.0], np.float32)  # one segment of 5 tokens on a line
DRAWS = 4000


@functools.cache
def _three_draws():
    """The tokens (indices into `POSITIONS`) of the first three k-means++ draws, `(DRAWS, 3)`,
    over `DRAWS` keys. The first two equal those of `num_clusters=2` (draw `j` reads
    `fold_in(key, j)` only)."""
    f = np.zeros((1, 1, 5, 6), np.float32)
    f[0, 0, :, 0] = POSITIONS
    segment, valid = jnp.array([0]), jnp.ones((1, 1, 5), bool)
    keys = jax.random.split(jax.random.key(11), DRAWS)
    seeds = jax.jit(jax.vmap(
        lambda key: tfs_jax.kmeans_plus_plus(f, segment, valid, key, num_clusters=3)))(keys)
    chosen = np.asarray(seeds[:, 0, :, 0])  # (DRAWS, 3) positions of the three centroids
    tokens = np.searchsorted(POSITIONS, chosen)
    assert np.array_equal(POSITIONS[tokens], chosen)  # every centroid is a token
    return tokens


def _p_value(observed, expected):
    """Pearson's chi-square test of counts against expected counts (df = cells - 1)."""
    stat = np.sum((observed - expected) ** 2 / expected)
    return float(scipy.stats.chi2.sf(stat, df=len(observed) - 1))


D2 = (POSITIONS[None, :] - POSITIONS[:, None]) ** 2  # D2[a, i]: squared distance a to i


def test_kmeans_plus_plus_draws_follow_d_squared():
    """Over 4,000 keys, the first draw is uniform over the segment's tokens and the second
    lands on token i with probability E_first[D_i^2 / sum D^2] (algorithm §6). Both frequency
    tables pass a chi-square test at p > 1e-4; drawing in proportion to D instead of D^2
    gives p < 1e-30 here."""
    first, second = _three_draws()[:, 0], _three_draws()[:, 1]
    assert (first != second).all()
    assert _p_value(np.bincount(first, minlength=5), np.full(5, DRAWS / 5)) > 1e-4
    law = (D2 / D2.sum(axis=1, keepdims=True)).mean(axis=0)  # first draw uniform
    observed = np.bincount(second, minlength=5)
    assert _p_value(observed, DRAWS * law) > 1e-4
    d1 = np.sqrt(D2)
    wrong = (d1 / d1.sum(axis=1, keepdims=True)).mean(axis=0)
    assert _p_value(observed, DRAWS * wrong) < 1e-30


def _third_draw_law(d2_of):
    """Expected counts of the third draw given each key's first two, `d2_of(a, b)` giving
    the `(5,)` weights of the third draw after draws `a`, `b`."""
    expected = np.zeros(5)
    for a, b in _three_draws()[:, :2]:
        weights = d2_of(a, b)
        expected += weights / weights.sum()
    return expected


def test_kmeans_plus_plus_third_draw_weighs_d_squared_to_the_nearest_centre():
    """The third draw, given the first two `a, b`, lands on token i with probability
    `min(D2[a, i], D2[b, i]) / sum` (algorithm §6: D^2 to the NEAREST chosen centre). On this line
    that law and "D^2 to the last chosen centre" differ for every pair (from k = 3 on; at
    k = 2 the two coincide). The third draw never repeats a chosen token (its D^2 is 0), and
    its counts pass a chi-square test against the nearest-centre law conditioned on each
    key's first two draws at p > 1e-4, while the last-centre law gives p < 1e-30 here."""
    draws = _three_draws()
    assert ((draws[:, 2] != draws[:, 0]) & (draws[:, 2] != draws[:, 1])).all()
    observed = np.bincount(draws[:, 2], minlength=5)
    nearest = _third_draw_law(lambda a, b: np.minimum(D2[a], D2[b]))
    assert _p_value(observed, nearest) > 1e-4
    last = _third_draw_law(lambda a, b: D2[b])
    assert _p_value(observed, last) < 1e-30
