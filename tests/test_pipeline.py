"""tfs_prune end to end: result contract, jit/vmap, no retracing, padding, robustness."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfs_jax
from tfs_jax import TFSConfig
from tfs_jax import tfs_prune

SHAPE = (6, 5, 6, 8)
CFG = TFSConfig(num_clusters=3, kmeans_iters=3)


def _video(seed=0, shape=SHAPE):
    """Smooth background plus a bright square moving one token right per frame."""
    rng = np.random.default_rng(seed)
    t, h, w, d = shape
    base = rng.normal(size=(h, w, d)).astype(np.float32)
    video = np.repeat(base[None], t, axis=0) + 0.01 * rng.normal(size=shape).astype(np.float32)
    blob = 3.0 * rng.normal(size=(2, 2, d)).astype(np.float32)
    for f in range(t):
        video[f, 1:3, f % (w - 1): f % (w - 1) + 2] = blob
    return video


@functools.lru_cache(maxsize=None)
def _result(seed=0, **changes):
    return tfs_prune(_video(seed), CFG.replace(**changes))


def test_result_fields_shapes_and_dtypes():
    t, h, w, _ = SHAPE
    r = _result()
    k = tfs_jax.static_budget(t * h * w, CFG.retain_ratio)
    chex.assert_shape(r.indices, (k,))
    chex.assert_type(r.indices, jnp.int32)
    chex.assert_shape([r.slot_valid], [(k,)])
    chex.assert_shape([r.keep_mask, r.cluster, r.has_candidate], (t, h, w))
    chex.assert_shape(r.saliency, (t, h, w, 3))
    chex.assert_shape(r.motion, (t, h, w, 2))
    chex.assert_shape(r.segment, (t,))
    chex.assert_type([r.num_kept, r.motion, r.segment, r.cluster], jnp.int32)
    chex.assert_type([r.slot_valid, r.keep_mask, r.has_candidate], bool)
    chex.assert_type(r.saliency, jnp.float32)
    assert set(vars(r)) == {"indices", "slot_valid", "keep_mask", "num_kept", "saliency", "motion",
                            "segment", "cluster", "has_candidate"}


def test_indices_mask_and_count_agree():
    t, h, w, _ = SHAPE
    r = _result()
    n = int(r.num_kept)
    idx = np.asarray(r.indices)
    np.testing.assert_array_equal(idx[:n], np.flatnonzero(np.asarray(r.keep_mask)))
    assert (idx[n:] == t * h * w).all() and (np.diff(idx[:n]) > 0).all()
    np.testing.assert_array_equal(r.slot_valid, np.arange(len(idx)) < n)


def test_slot_valid_is_the_pytree_field_and_valid_a_deprecated_alias():
    """`slot_valid` is the data field (flatten, jit, vmap carry it); `Decision.valid`
    still reads it, with a DeprecationWarning (`valid` is the (T, H, W) input mask)."""
    r = _result()
    leaves, treedef = jax.tree_util.tree_flatten(r)
    assert len(leaves) == 9
    assert jax.tree_util.tree_unflatten(treedef, leaves).slot_valid is r.slot_valid
    with pytest.warns(DeprecationWarning, match="slot_valid"):
        old = r.valid
    assert old is r.slot_valid
    d = tfs_jax.decide(jnp.array([True, False, True, False]), 0.75)
    assert jax.jit(lambda x: x)(d).slot_valid.tolist() == [True, True, False]
    batched = jax.vmap(lambda m: tfs_jax.decide(m, 0.5))(jnp.eye(4, dtype=bool))
    assert batched.slot_valid.shape == (4, 2) and batched.slot_valid[:, 0].all()
    with pytest.warns(DeprecationWarning):
        assert batched.valid.shape == (4, 2)


def test_the_old_names_of_the_private_cores_warn():
    from tfs_jax import saliency

    for name in ("motion_vectors_core", "regional_saliency_core", "focal_saliency_core"):
        with pytest.warns(DeprecationWarning, match=name.removesuffix("_core")):
            assert getattr(saliency, name) is getattr(saliency, f"_{name}")
    with pytest.raises(AttributeError):
        saliency.no_such_core


def test_moving_blob_is_seen_and_background_coalesced():
    r = _result()
    motion = np.asarray(r.motion)
    # The blob at columns f..f+1 came from f-1..f: its tokens point back, dw = -1.
    for f in range(1, 5):
        np.testing.assert_array_equal(motion[f, 1:3, f + 1], [[0, -1], [0, -1]])
    s_m = np.asarray(r.saliency[..., 0])
    assert s_m[2, 1:3, 2:4].min() > s_m[2, 4, :].max()
    # Static background past frame 0 is never kept after coalescing.
    kept = np.asarray(r.keep_mask)
    static = np.asarray(r.has_candidate) & (motion == 0).all(-1)
    assert not (kept & static).any() and kept.any()


def test_without_coalescing_exactly_the_budget_is_kept():
    t, h, w, _ = SHAPE
    r = _result(coalesce=False)
    assert int(r.num_kept) == tfs_jax.static_budget(t * h * w, CFG.retain_ratio)
    # Coalescing removes exactly the kept static tokens.
    r_c = _result()
    static = np.asarray(r.has_candidate) & (np.asarray(r.motion) == 0).all(-1)
    np.testing.assert_array_equal(r_c.keep_mask, np.asarray(r.keep_mask) & ~static)


def test_identical_frames_one_segment_and_refill():
    frame = np.random.default_rng(3).normal(size=SHAPE[1:]).astype(np.float32)
    video = np.repeat(frame[None], SHAPE[0], axis=0)
    t, h, w, _ = SHAPE
    k_v = tfs_jax.static_budget(t * h * w, CFG.retain_ratio)
    r = tfs_prune(video, CFG)
    np.testing.assert_array_equal(r.segment, 0)
    np.testing.assert_array_equal(r.motion, 0)
    np.testing.assert_array_equal(r.saliency[..., 0], 0)
    assert not np.asarray(r.keep_mask[1:]).any()  # everything after frame 0 is static
    r_fill = tfs_prune(video, CFG.replace(refill=True))
    # Refill keeps min(K_v, remaining): only frame 0 remains (h * w = 30 >= K_v = 45? no).
    assert int(r_fill.num_kept) == min(k_v, h * w)
    assert np.asarray(r_fill.keep_mask[0]).all() and not np.asarray(r_fill.keep_mask[1:]).any()


def test_jit_gives_the_same_result_and_static_impl():
    r = _result()
    jitted = jax.jit(tfs_prune, static_argnames="impl")(_video(), CFG, impl="xla")
    chex.assert_trees_all_equal(r, jitted)


def test_traced_fields_do_not_retrace():
    video = jnp.asarray(_video())

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(cfg):
        return tfs_prune(video, cfg)

    for weights, bias, temp, thr, q in [((1, 1, 1), 1e-4, 1.0, 0.6, 0.9), ((0, 1, 2), 0.0, 0.5, 0.1, 0.5),
                                        ((3, 0, 0), 1e-2, 2.0, 1.5, 1.0)]:
        run(CFG.replace(factor_weights=weights, stay_bias=bias, focal_temperature=temp,
                        abs_threshold=thr, rel_quantile=q))
    assert run._cache_size() == 1


def test_sweep_over_factor_weights_is_one_vmapped_call():
    video = jnp.asarray(_video())
    weights = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.5, 2.0]])
    swept = jax.vmap(lambda wt: tfs_prune(video, CFG.replace(factor_weights=wt)))(weights)
    for i, wt in enumerate(np.asarray(weights)):
        single = tfs_prune(video, CFG.replace(factor_weights=tuple(wt)))
        np.testing.assert_array_equal(swept.indices[i], single.indices)


def test_vmap_over_padded_batch_equals_each_video():
    t, h, w, d = SHAPE
    short = _video(1)[:4]
    batch = np.stack([_video(0), np.concatenate([short, np.full((2, h, w, d), np.nan, np.float32)])])
    valid = np.ones((2, t, h, w), bool)
    valid[1, 4:] = False
    out = jax.vmap(lambda x, m: tfs_prune(x, CFG, valid=m))(batch, valid)
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[0], out), _result())
    alone = tfs_prune(short, CFG)
    np.testing.assert_array_equal(out.keep_mask[1, :4], alone.keep_mask)
    np.testing.assert_array_equal(out.saliency[1, :4], alone.saliency)
    np.testing.assert_array_equal(out.segment[1], np.r_[np.asarray(alone.segment), -1, -1])
    assert int(out.num_kept[1]) == int(alone.num_kept)
    n = int(alone.num_kept)
    np.testing.assert_array_equal(out.indices[1, :n], alone.indices[:n])


def test_vmap_with_in_axes_none_config():
    batch = np.stack([_video(0), _video(1)])
    out = jax.vmap(tfs_prune, in_axes=(0, None))(batch, CFG)
    np.testing.assert_array_equal(out.indices[1], _result(1).indices)


def test_padding_contents_never_leak():
    video = _video()
    valid = np.ones(SHAPE[:3], bool)
    valid[2, 1, 1] = valid[0, 4, 5] = valid[5, 0, 0] = False
    results = []
    for fill in (0.0, np.nan, np.inf, -1e30):
        v = video.copy()
        v[~valid] = fill
        results.append(tfs_prune(v, CFG, valid=valid))
    for r in results[1:]:
        chex.assert_trees_all_equal(r, results[0])
    r = results[0]
    assert not np.asarray(r.keep_mask)[~valid].any()
    assert (np.asarray(r.cluster)[~valid] == -1).all() and (np.asarray(r.saliency)[~valid] == 0).all()
    # NaN or inf in a token marked valid makes it padding in the pure function.
    v = video.copy()
    v[2, 1, 1, 3] = v[5, 0, 0, 0] = np.nan
    v[0, 4, 5, 1] = -np.inf
    chex.assert_trees_all_equal(tfs_prune(v, CFG, valid=np.ones(SHAPE[:3], bool)), results[0])


def _nonfinite_video():
    """A video of D = 24 with a NaN, +inf or -inf at a different element of each of a dozen
    valid tokens (a vectorised max over D can drop a NaN at some lanes and not others),
    and the mask that marks those tokens as padding."""
    t, h, w, _ = SHAPE
    video = np.concatenate([_video(), _video(5)], axis=-1)  # D = 16
    video = np.concatenate([video, video[..., :8] * 0.5], axis=-1)  # D = 24
    rng = np.random.default_rng(7)
    flat = rng.choice(t * h * w, size=12, replace=False)
    masked = np.ones((t, h, w), bool)
    for j, i in enumerate(flat):
        ti, hi, wi = np.unravel_index(i, (t, h, w))
        video[ti, hi, wi, (5 * j) % 24] = (np.nan, np.inf, -np.inf)[j % 3]
        masked[ti, hi, wi] = False
    return video, masked


NONFINITE_FIELDS = ("keep_mask", "indices", "num_kept", "motion", "has_candidate", "saliency",
                    "segment", "cluster")


@pytest.mark.parametrize("mode", ["numpy", "jax", "jit", "vmap"])
def test_nonfinite_valid_tokens_are_exactly_padding(mode):
    """Algorithm §Notation: a valid token that is not finite is padding for the pure function.
    Every stage (motion, S_R, S_F, segments, k-means, selection) must see the same thing as
    when the caller masks those tokens, and no output may hold NaN."""
    video, masked = _nonfinite_video()
    want = tfs_prune(video, CFG, valid=masked)
    run = {
        "numpy": lambda: tfs_prune(video, CFG),
        "jax": lambda: tfs_prune(jnp.asarray(video), CFG),
        "jit": lambda: jax.jit(tfs_prune)(jnp.asarray(video), CFG),
        "vmap": lambda: jax.tree.map(
            lambda a: a[0], jax.vmap(tfs_prune, in_axes=(0, None))(np.stack([video, video[::-1]]), CFG)),
    }[mode]
    got = run()
    for field in NONFINITE_FIELDS:
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    for leaf in jax.tree.leaves(got):
        assert not np.isnan(np.asarray(leaf, np.float32)).any()
    assert (np.asarray(got.cluster)[~masked] == -1).all()
    assert not np.asarray(got.keep_mask)[~masked].any()


def test_non_finite_valid_tokens_are_padding_on_wide_rows():
    """The same on 168 tokens of 64 features, where XLA:CPU's max reduction drops NaN (a
    NaN first or last in a token used to leave it valid and leak into every stage)."""
    rng = np.random.default_rng(3)
    video = rng.normal(size=(4, 6, 7, 64)).astype(np.float32)
    broken, valid = video.copy(), np.ones((4, 6, 7), bool)
    for idx, value in (((1, 3, 3, 0), np.nan), ((2, 0, 6, 63), np.nan), ((3, 5, 0, 10), np.inf)):
        broken[idx] = value
        valid[idx[:3]] = False
    got = tfs_prune(broken, CFG, valid=np.ones((4, 6, 7), bool))
    chex.assert_trees_all_equal(got, tfs_prune(video, CFG, valid=valid))
    assert np.isfinite(np.asarray(got.saliency)).all()


@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-8, 1e18, 1e30, 3e38])
def test_no_nan_for_any_finite_scale(scale):
    video = (_video() * np.float32(scale)) if scale != 3e38 else np.clip(_video(), -1, 1) * np.float32(scale)
    assert np.isfinite(video).all()
    r = tfs_prune(video, CFG)
    for leaf in jax.tree.leaves(r):
        assert not np.isnan(np.asarray(leaf, np.float32)).any()
    assert int(r.num_kept) >= 1 or scale == 0.0


def test_huge_scale_keeps_the_same_decisions():
    # Cosines are scale-free: a power-of-two rescaling changes nothing but the guard.
    base = _result()
    big = tfs_prune(_video() * np.float32(2.0**80), CFG)
    chex.assert_trees_all_equal(big, base)


def test_float64_numpy_beyond_float32_range_stays_valid():
    video = _video().astype(np.float64) * 1e300
    r = tfs_prune(video, CFG)
    assert int(r.num_kept) == int(_result().num_kept)
    np.testing.assert_array_equal(r.keep_mask, _result().keep_mask)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_inputs(dtype):
    r = tfs_prune(jnp.asarray(_video(), dtype), CFG)
    ref = tfs_prune(np.asarray(jnp.asarray(_video(), dtype).astype(jnp.float32)), CFG)
    chex.assert_trees_all_equal(r, ref)


def test_all_padding_video_keeps_nothing():
    r = tfs_prune(_video(), CFG, valid=np.zeros(SHAPE[:3], bool))
    assert int(r.num_kept) == 0 and (np.asarray(r.segment) == -1).all()
    assert not np.isnan(np.asarray(r.saliency)).any()


def test_keys_typed_and_legacy_and_determinism():
    a = tfs_prune(_video(), CFG, key=jax.random.key(5))
    b = tfs_prune(_video(), CFG, key=jax.random.PRNGKey(5))
    chex.assert_trees_all_equal(a, b)
    chex.assert_trees_all_equal(tfs_prune(_video(), CFG, key=jax.random.key(5)), a)


def test_gather_kept_positions_are_the_originals():
    video = _video()
    r = _result()
    kept, pos, valid = tfs_jax.gather_kept(video, r)
    n = int(r.num_kept)
    t, h, w = np.nonzero(np.asarray(r.keep_mask))
    np.testing.assert_array_equal(pos[:n], np.stack([t, h, w], -1))
    np.testing.assert_array_equal(kept[:n], video[t, h, w])
    assert not np.asarray(kept[n:]).any() and not np.asarray(pos[n:]).any() and not np.asarray(valid[n:]).any()


def test_tfs_prune_is_the_composition_of_its_public_stages():
    """README: swap a stage by composing the public functions. Composed by hand from them
    (under jit, as a user's own pipeline would run), the result equals tfs_prune's bit for
    bit."""
    video = _video()
    cfg = CFG
    valid = np.ones(SHAPE[:3], bool)
    decision, saliency, cluster = jax.jit(_composed)(video, valid, cfg)
    result = _result()
    for field in ("indices", "slot_valid", "keep_mask", "num_kept"):
        np.testing.assert_array_equal(getattr(decision, field), getattr(result, field), err_msg=field)
    np.testing.assert_array_equal(saliency, result.saliency)
    np.testing.assert_array_equal(cluster, result.cluster)
    assert isinstance(result, tfs_jax.Decision)


def _composed(video, valid, cfg):
    motion, has = tfs_jax.motion_vectors(video, valid, radius=cfg.motion_radius, stay_bias=cfg.stay_bias)
    s_m = tfs_jax.dynamic_saliency(motion, valid, window=cfg.motion_window, radius=cfg.motion_radius)
    s_r = tfs_jax.regional_saliency(video, valid, center_radius=cfg.center_radius,
                                    surround_radius=cfg.surround_radius)
    s_f = tfs_jax.focal_saliency(video, valid, temperature=cfg.focal_temperature)
    saliency = jnp.stack([s_m, s_r, s_f], axis=-1)
    segment = tfs_jax.segment_frames(s_m, valid, abs_threshold=cfg.abs_threshold,
                                     rel_quantile=cfg.rel_quantile)
    features = tfs_jax.clustering_features(saliency, segment, valid, factor_weights=cfg.factor_weights)
    cluster = tfs_jax.segmented_kmeans(features, segment, valid, jax.random.key(0),
                                       num_clusters=cfg.num_clusters, iters=cfg.kmeans_iters)
    keep = tfs_jax.select_tokens(saliency, features, segment, cluster, valid, motion, has,
                                 retain_ratio=cfg.retain_ratio, num_clusters=cfg.num_clusters)
    return tfs_jax.decide(keep, cfg.retain_ratio), saliency, cluster
