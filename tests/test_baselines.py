"""Tests of tfs_jax/baselines.py: hand cases per method, then the shared contract."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfs_jax
from tfs_jax import baselines
from tfs_jax.baselines import _frame_weights
from tfs_jax.budget import static_budget
from tfs_jax.tokens import as_typed_key

METHODS = sorted(baselines.RULES)
SHAPE = (4, 3, 4, 8)  # T, H, W, D: the one shape of the contract tests


def _normal(seed, shape):
    """Test data from numpy: an eager `jax.random.normal` costs seconds of XLA compile."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _video(seed=0):
    tokens = _normal(seed, SHAPE)
    valid = np.ones(SHAPE[:3], bool)
    valid[3] = False  # a frame of padding
    valid[0, 1, 2] = valid[2, 0, 0] = False  # and holes
    return tokens, jnp.asarray(valid)


def _kept(result):
    return np.asarray(result.indices)[np.asarray(result.slot_valid)].tolist()


def _row(vectors, t=1):
    """`(T, 1, W, D)` video from a nested list of per-frame token vectors."""
    return jnp.asarray(vectors, jnp.float32).reshape(t, 1, -1, len(vectors[0][0]))


# ------------------------------------------------------------------ hand cases per method


def test_uniform_hand_case():
    tokens = jnp.zeros((1, 1, 8, 2))
    assert _kept(baselines.uniform(tokens, 0.25)) == [1, 5]  # round(c/4) steps at c = 2, 6
    valid = jnp.arange(8).reshape(1, 1, 8) > 0  # 7 valid, K_v = round(1.75) = 2
    # Ranks 0..6 sit at flat 1..7; round(2c/7) steps at c = 2 (rank 1) and c = 6 (rank 5).
    assert _kept(baselines.uniform(tokens, 0.25, valid=valid)) == [2, 6]


def test_random_is_top_k_of_the_key_uniforms():
    tokens, valid = _video()
    key = jax.random.key(7)
    result = baselines.random(tokens, 0.25, valid=valid, key=key)
    u = np.where(np.asarray(valid).reshape(-1), np.asarray(jax.random.uniform(key, (valid.size,))), -1)
    k_v = int(result.num_kept)
    assert sorted(_kept(result)) == sorted(np.argsort(-u, kind="stable")[:k_v].tolist())
    assert _kept(baselines.random(tokens, 0.25, valid=valid, key=key)) == _kept(result)
    assert _kept(baselines.random(tokens, 0.25, valid=valid, key=jax.random.key(8))) != _kept(result)


def test_legacy_and_typed_keys_give_one_trace_and_identical_masks():
    """A legacy `uint32[2]` key is wrapped before the jitted rule, so it shares the typed
    key's compiled program and keeps exactly the tokens it kept before (the top `K_v` of
    `uniform(legacy_key)`)."""
    tokens, valid = _video()
    legacy = jax.random.PRNGKey(7)
    typed = as_typed_key(legacy)
    result = baselines.random(tokens, 0.3, valid=valid, key=typed)
    compiled = baselines._run._cache_size()
    again = baselines.random(tokens, 0.3, valid=valid, key=legacy)
    assert baselines._run._cache_size() == compiled  # no second compile for the legacy key
    chex.assert_trees_all_equal(again, result)
    u = np.where(np.asarray(valid).reshape(-1), np.asarray(jax.random.uniform(legacy, (valid.size,))), -1)
    assert sorted(_kept(again)) == sorted(np.argsort(-u, kind="stable")[:int(again.num_kept)].tolist())


def test_random_is_uniform_over_valid_tokens():
    tokens, valid = _video()
    keys = jax.random.split(jax.random.key(0), 400)
    masks = jax.vmap(lambda k: baselines.random(tokens, 0.25, valid=valid, key=k).keep_mask)(keys)
    freq = np.asarray(masks).mean(axis=0)[np.asarray(valid)]
    k_v, n_v = int(masks[0].sum()), int(valid.sum())
    # Binomial(400, K_v / N_v) per token: 4.5 standard deviations either side.
    assert np.all(np.abs(freq - k_v / n_v) < 4.5 * np.sqrt(k_v / n_v * (1 - k_v / n_v) / 400))


def test_evs_hand_case():
    # Per position, 1 - cos to the previous frame: t=1: (0, 1); t=2: (2, 0); t=0 is new.
    tokens = _row([[[1, 0], [0, 1]], [[2, 0], [1, 0]], [[-1, 0], [3, 0]]], t=3)
    assert _kept(baselines.evs(tokens, 2 / 3)) == [0, 1, 3, 4]  # new, new, 1.0, 2.0
    # With (t=1, w=1) padding, (t=2, w=1) has no predecessor: it is new and ranks first.
    valid = jnp.ones((3, 1, 2), bool).at[1, 0, 1].set(False)
    assert _kept(baselines.evs(tokens, 0.6, valid=valid)) == [0, 1, 5]  # K_v = 3 of 5


def test_divprune_hand_case():
    tokens = _row([[[1, 0], [1, 0.01], [0, 1], [-1, 0]]])
    # Mean direction ~45 deg: d=(-1, 0) is farthest (1 - cos 134.7 deg = 1.70): start.
    # Then a (distance 2.0 to d, b only 1.99995), then c (min distance 1.0; b's is 5e-5).
    assert _kept(baselines.divprune(tokens, 0.5)) == [0, 3]
    assert _kept(baselines.divprune(tokens, 0.75)) == [0, 2, 3]


def _divprune_reference(tokens, valid, k_v):
    """Plain numpy greedy max-min with the same start and tie rules."""
    x = np.asarray(tokens, np.float64).reshape(-1, tokens.shape[-1])
    ok = np.asarray(valid).reshape(-1)
    u = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    center = np.where(ok[:, None], u, 0).sum(0)
    center /= max(np.linalg.norm(center), 1e-6)
    chosen = [int(np.argmax(np.where(ok, 1 - u @ center, -1)))]
    dist = np.clip(1 - u @ u.T, 0, 2)
    while len(chosen) < k_v:
        score = np.where(ok, dist[:, chosen].min(axis=1), -1)
        score[chosen] = -1
        chosen.append(int(np.argmax(score)))
    return sorted(chosen)


def test_divprune_matches_a_numpy_greedy():
    tokens, valid = _video(3)
    result = baselines.divprune(tokens, 0.35, valid=valid)
    assert _kept(result) == _divprune_reference(tokens, valid, int(result.num_kept))


def test_vidcom2_hand_case():
    # Channels 2, 3 vary by +-10 and are dropped; on channels 0, 1 each frame is three
    # copies of (1, 0) and one (0, 1): the (0, 1) token is the outlier of frame and video.
    s = [10, -10, 10, -10]
    frame = [[1, 0, s[j], -s[j]] if j < 3 else [0, 1, s[j], -s[j]] for j in range(4)]
    tokens = _row([frame, frame], t=2)
    assert _kept(baselines.vidcom2(tokens, 0.25)) == [3, 7]  # equal frames: one each
    assert _kept(baselines.vidcom2(tokens, 0.5)) == [0, 3, 4, 7]  # then the first (1, 0)


def test_vidcom2_frame_weights_hand_case():
    # Softmax at temperature 0.01 of (0, -1, -1) is (1, e^-100, e^-100): weights 1 + p - 1/3.
    w = _frame_weights(jnp.array([0.0, -1.0, -1.0]), jnp.ones(3, bool))
    np.testing.assert_allclose(w, [5 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    w = _frame_weights(jnp.array([0.0, -1.0, 9.0]), jnp.array([True, True, False]))
    np.testing.assert_allclose(w, [1.5, 0.5, 1.0], rtol=1e-6)  # padding frame: neutral 1


def test_vidcom2_gives_the_unique_frame_more_tokens():
    base, other = _normal(1, (1, 2, 4, 8)), _normal(2, (1, 2, 4, 8))
    tokens = jnp.concatenate([base, base, base, other])  # frame 3 is the odd one out
    per_frame = np.asarray(baselines.vidcom2(tokens, 0.25).keep_mask).sum(axis=(1, 2))
    assert per_frame.sum() == 8 and per_frame[3] == per_frame.max() > per_frame[:3].min()


# ------------------------------------------------------------------ the shared contract
# One call per method at ratio 0.25 on the standard video (34 valid tokens of 48, so
# K_v = round_half_up(8.5) = 9 of K = 12 slots), reused by the tests below.

KEY = jax.random.key(5)


@pytest.fixture(scope="module")
def results():
    tokens, valid = _video()
    return {m: baselines.prune(m, tokens, 0.25, valid=valid, key=KEY) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_exact_budget_and_no_padding(method, results):
    _, valid = _video()
    result = results[method]
    keep = np.asarray(result.keep_mask)
    assert result.indices.shape == (12,) and int(result.num_kept) == 9 == keep.sum()
    assert not np.any(keep & ~np.asarray(valid))
    idx = np.asarray(result.indices)
    assert idx[:9].tolist() == np.flatnonzero(keep).tolist() and np.all(idx[9:] == keep.size)
    assert np.asarray(result.slot_valid).tolist() == [i < 9 for i in range(12)]


@pytest.mark.parametrize("method", METHODS)
def test_nan_padding_never_leaks(method, results):
    tokens, valid = _video()
    garbage = jnp.where(valid[..., None], tokens, jnp.nan).at[3, 0, 0, 0].set(jnp.inf)
    result = baselines.prune(method, garbage, 0.25, valid=valid, key=KEY)
    chex.assert_trees_all_equal(result, results[method])  # as if the padding were clean


@pytest.mark.parametrize("method", METHODS)
def test_jit_vmap_without_recompiling(method, results):
    fn = getattr(baselines, method)  # the by-name wrapper of prune(method, ...)
    (t1, v1), (t2, v2) = _video(0), _video(1)
    v2 = v2.at[1].set(False)  # another mask, same shape
    chex.clear_trace_counter()
    batched = jax.jit(jax.vmap(chex.assert_max_traces(lambda t, v, k: fn(t, 0.25, valid=v, key=k), n=1)))
    out = batched(jnp.stack([t1, t2]), jnp.stack([v1, v2]), jnp.stack([KEY, KEY]))
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[0], out), results[method])
    again = batched(jnp.stack([t2, t1]), jnp.stack([v2, v1]), jnp.stack([KEY, KEY]))  # no retrace
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[1], again), results[method])
    second = jax.tree.map(lambda a: a[1], out)
    assert int(second.num_kept) == static_budget(int(v2.sum()), 0.25)
    assert not np.any(np.asarray(second.keep_mask) & ~np.asarray(v2))


def test_static_ratio_under_jit(results):
    tokens, valid = _video()
    prune = jax.jit(baselines.uniform, static_argnames="retain_ratio")
    chex.assert_trees_all_equal(prune(tokens, retain_ratio=0.25, valid=valid), results["uniform"])


@pytest.mark.parametrize("method", METHODS)
def test_empty_video_keeps_nothing(method, results):
    tokens, _ = _video()
    empty = baselines.prune(method, tokens, 0.25, valid=jnp.zeros(SHAPE[:3], bool), key=KEY)
    assert int(empty.num_kept) == 0 and not np.any(empty.slot_valid) and not np.any(empty.keep_mask)


@pytest.mark.parametrize("method", METHODS)
def test_a_baseline_returns_a_plain_decision(method, results):
    """A baseline reports what it decided and nothing it never computed (no saliency,
    motion or segments)."""
    assert type(results[method]) is tfs_jax.Decision
    assert set(vars(results[method])) == {"indices", "slot_valid", "keep_mask", "num_kept"}


def test_unknown_method_is_refused():
    tokens, _ = _video()
    with pytest.raises(ValueError, match="method"):
        baselines.prune("tome", tokens, 0.25)


def test_full_ratio_keeps_every_valid_token():
    tokens, valid = _video()
    assert np.array_equal(baselines.divprune(tokens, 1.0, valid=valid).keep_mask, valid)


def test_bad_input_raises_before_tracing():
    tokens, _ = _video()
    for ratio in (0, 1.5, float("nan"), True, 1e-6):
        with pytest.raises(ValueError, match="retain_ratio"):
            baselines.uniform(tokens, ratio)
    with pytest.raises(ValueError, match="static_argnames"):
        jax.jit(lambda r: baselines.uniform(tokens, r))(0.25)
    with pytest.raises(ValueError, match="rank"):
        baselines.evs(tokens[0], 0.25)
    with pytest.raises(ValueError, match="float"):
        baselines.divprune(jnp.ones(SHAPE, jnp.int32), 0.25)
    with pytest.raises(ValueError, match="valid"):
        baselines.vidcom2(tokens, 0.25, valid=jnp.ones((4, 3, 5), bool))
    with pytest.raises(ValueError, match="key"):
        baselines.random(tokens, 0.25, key=jnp.zeros((3,), jnp.uint32))
