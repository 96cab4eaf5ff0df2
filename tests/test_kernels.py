"""Tests for `tfs_jax/kernels/`: both paths of every op (the Pallas kernel in interpret mode
and the XLA path) against the op's plain `*_reference`, the references and the XLA path
against brute-force numpy loops, and the GPU lowering.

Interpret mode is slow, so kernel tests use one tiny shape with a non-power-of-two grid
(`H=5`, `W=6`) and a feature axis that takes two `block_d` steps plus a ragged tail (`D=12`,
`block_d=8`). Invalid tokens hold NaN everywhere: nothing may leak. `interpret=True` is
passed explicitly to every kernel call; `test_pallas_needs_a_gpu_on_cpu` shows that a call
that forgot it would fail here instead of silently testing the reference.
"""

import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfs_jax.kernels import box_sum
from tfs_jax.kernels import resolve_impl
from tfs_jax.tokens import valid_and_scale
from tfs_jax.kernels.box_sum import axis_sum_pallas
from tfs_jax.kernels.box_sum import box_sum_reference
from tfs_jax.kernels.box_sum import box_sum_xla
from tfs_jax.kernels.box_sum import window_contrast
from tfs_jax.kernels.box_sum import window_contrast_reference
from tfs_jax.kernels.box_sum import window_contrast_xla
from tfs_jax.kernels.focal import NEIGHBOUR_OFFSETS
from tfs_jax.kernels.focal import _direct_terms
from tfs_jax.kernels.focal import _unless_cancelling
from tfs_jax.kernels.focal import BlockSizes as FocalBlockSizes
from tfs_jax.kernels.focal import focal_reconstruction
from tfs_jax.kernels.focal import focal_reconstruction_pallas
from tfs_jax.kernels.focal import focal_reconstruction_reference
from tfs_jax.kernels.focal import focal_reconstruction_xla
from tfs_jax.kernels.motion_match import BlockSizes as MotionBlockSizes
from tfs_jax.kernels.motion_match import candidate_offsets
from tfs_jax.kernels.motion_match import motion_match
from tfs_jax.kernels.motion_match import motion_match_pallas
from tfs_jax.kernels.motion_match import motion_match_reference
from tfs_jax.kernels.motion_match import motion_match_xla
from tfs_jax.tokens import prepare_tokens

SHAPE = (3, 5, 6, 12)  # (T, H, W, D): non-power-of-two grid, D = 8 + a ragged 4
MOTION_BLOCKS = MotionBlockSizes(block_d=8)
FOCAL_BLOCKS = FocalBlockSizes(block_d=8)
# Per input dtype, the absolute tolerance between kernel and reference on float outputs
# (saliency-like values in [0, 2] or window sums of unit-scale tokens). Both paths upcast
# the same input values to float32, so the tolerance covers summation order only; bfloat16
# inputs make exact ties and cancellations likelier, hence the looser bound.
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-4}
DTYPES = list(TOLERANCE)
NEAR_TIE = 1e-5  # algorithm §Agreement: decisions this close are genuine near-ties


def _video(seed, shape=SHAPE, dtype="float32", density=0.8):
    """Random tokens rounded to `dtype`, a random mask, NaN at every invalid token."""
    rng = np.random.default_rng(seed)
    x = np.array(jnp.asarray(rng.normal(size=shape), dtype).astype(jnp.float32))
    valid = rng.random(shape[:3]) < density
    x[~valid] = np.nan
    return x, valid


def _as(x, dtype):
    return jnp.asarray(x).astype(dtype)


# ----------------------------------------------------------------------------- oracles


def _cos(a, b):
    na, nb = max(np.linalg.norm(a), 1e-6), max(np.linalg.norm(b), 1e-6)
    return float(a @ b) / (na * nb)


def motion_oracle(x, valid, stay_bias, radius):
    """Algorithm §1 by loops, in float64; also which tokens are genuine near-ties."""
    t, h, w, _ = x.shape
    motion = np.zeros((t, h, w, 2), np.int32)
    has = np.zeros((t, h, w), bool)
    near = np.zeros((t, h, w), bool)
    x = x.astype(np.float64)
    for ti in range(1, t):
        for i in range(h):
            for j in range(w):
                if not valid[ti, i, j]:
                    continue
                scores = []
                for dh, dw in candidate_offsets(radius):
                    ii, jj = i + dh, j + dw
                    if 0 <= ii < h and 0 <= jj < w and valid[ti - 1, ii, jj]:
                        s = _cos(x[ti, i, j], x[ti - 1, ii, jj]) + (stay_bias if (dh, dw) == (0, 0) else 0)
                        scores.append((s, (dh, dw)))
                if scores:
                    best = max(scores, key=lambda p: p[0])  # first maximum: row-major ties
                    motion[ti, i, j], has[ti, i, j] = best[1], True
                    rivals = sorted({s for s, _ in scores}, reverse=True)
                    near[ti, i, j] = len(rivals) > 1 and rivals[0] - rivals[1] < NEAR_TIE
    return motion, has, near


def focal_oracle(x, valid, temperature):
    """Algorithm §3 by loops, in float64."""
    t, h, w, _ = x.shape
    raw = np.zeros((t, h, w))
    count = np.zeros((t, h, w), np.int32)
    x = x.astype(np.float64)
    for ti in range(t):
        for i in range(h):
            for j in range(w):
                if not valid[ti, i, j]:
                    continue
                nbs = [x[ti, i + dh, j + dw] for dh, dw in NEIGHBOUR_OFFSETS
                       if 0 <= i + dh < h and 0 <= j + dw < w and valid[ti, i + dh, j + dw]]
                count[ti, i, j] = len(nbs)
                if nbs:
                    logits = np.array([_cos(x[ti, i, j], nb) for nb in nbs]) / temperature
                    wts = np.exp(logits - logits.max())
                    hat = sum(wk * nb for wk, nb in zip(wts / wts.sum(), nbs))
                    raw[ti, i, j] = np.clip(1 - _cos(x[ti, i, j], hat), 0, 2)
    return raw, count


def window_oracle(x, valid, radius):
    """Box sums and counts by loops (algorithm §0 windows)."""
    t, h, w = valid.shape
    sums = np.zeros(x.shape)
    counts = np.zeros((t, h, w), np.int32)
    xz = np.where(valid.reshape(valid.shape + (1,) * (x.ndim - 3)), x, 0).astype(np.float64)
    rt, rh, rw = radius
    for ti in range(t):
        for i in range(h):
            for j in range(w):
                win = np.s_[max(ti - rt, 0): ti + rt + 1, max(i - rh, 0): i + rh + 1, max(j - rw, 0): j + rw + 1]
                sums[ti, i, j] = xz[win].sum(axis=(0, 1, 2))
                counts[ti, i, j] = valid[win].sum()
    return sums, counts


def contrast_oracle(x, valid, center, surround):
    """Algorithm §2's raw S_R by loops: cosine distance of the centre and surround means."""
    sum_c, n_c = window_oracle(x, valid, center)
    sum_b, n_b = window_oracle(x, valid, surround)
    n_s = n_b - n_c
    raw = np.zeros(valid.shape)
    for idx in zip(*np.nonzero(valid & (n_s > 0))):
        raw[idx] = np.clip(1 - _cos(sum_c[idx] / n_c[idx], (sum_b[idx] - sum_c[idx]) / n_s[idx]), 0, 2)
    return raw, np.where(valid, n_s, 0)


# ----------------------------------------------------------------------------- dispatch


def test_resolve_impl():
    assert jax.default_backend() == "cpu"
    assert resolve_impl("auto") == "xla"
    for impl in ("pallas", "interpret", "xla"):
        assert resolve_impl(impl) == impl
    for gone in ("triton", "reference"):
        with pytest.raises(ValueError, match="impl"):
            resolve_impl(gone)


def test_auto_picks_pallas_only_on_an_accepted_platform(monkeypatch):
    """A GPU that never ran the acceptance script gets the XLA path; one whose (compute
    capability, jax version) passed gets the kernels."""
    from tfs_jax.kernels import dispatch

    monkeypatch.setattr(dispatch, "gpu_platform", lambda: ("9.0", jax.__version__))
    assert dispatch.ACCEPTED_PLATFORMS == frozenset()
    assert resolve_impl("auto") == "xla"
    monkeypatch.setattr(dispatch, "ACCEPTED_PLATFORMS", frozenset({("9.0", jax.__version__)}))
    assert resolve_impl("auto") == "pallas"
    monkeypatch.setattr(dispatch, "gpu_platform", lambda: None)
    assert resolve_impl("auto") == "xla"


def test_without_the_triton_backend():
    """On a jax without Pallas' Triton backend (deprecated since jax 0.11), `tfs_jax` still
    imports and runs: "auto" is "xla", and "pallas"/"interpret" refuse with a `ValueError`
    that says why. A fresh interpreter, with the module hidden before jax is imported."""
    script = textwrap.dedent("""
        import sys
        sys.modules["jax.experimental.pallas.triton"] = None
        import jax.numpy as jnp
        import tfs_jax
        from tfs_jax.kernels import box_sum, dispatch, resolve_impl
        assert not dispatch.pallas_available() and resolve_impl("auto") == "xla"
        for impl in ("pallas", "interpret"):
            try:
                resolve_impl(impl)
            except ValueError as err:
                assert "jax.experimental.pallas.triton" in str(err), err
            else:
                raise AssertionError(impl)
        sums, counts = box_sum(jnp.ones((2, 3, 4)), jnp.ones((2, 3, 4), bool), (1, 1, 1))
        assert int(counts[0, 0, 0]) == 8 and float(sums[1, 1, 1]) == 18.0
    """)
    root = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_pallas_needs_a_gpu_on_cpu():
    x, valid = _video(0)
    with pytest.raises(Exception, match="interpret"):
        motion_match(jnp.asarray(x), jnp.asarray(valid), 1e-4, impl="pallas")


def test_valid_and_scale_matches_prepare_tokens():
    rng = np.random.default_rng(1)
    for magnitude in (1.0, 1e-30, 1e25, 3e38):
        x = np.clip(rng.normal(size=(2, 3, 4, 16)), -1, 1) * np.float32(magnitude)
        x = x.astype(np.float32)
        x[0, 1, 2, 3], x[1, 0, 0, 0] = np.nan, -np.inf
        mask = rng.random((2, 3, 4)) > 0.2
        v, v_valid = prepare_tokens(jnp.asarray(x), jnp.asarray(mask))
        valid, scale = valid_and_scale(jnp.asarray(x), jnp.asarray(mask))
        np.testing.assert_array_equal(valid, v_valid)
        loaded = jnp.where(valid[..., None], jnp.asarray(x) * scale, 0.0)
        np.testing.assert_array_equal(loaded, v)  # bit for bit
        assert (float(scale) == 1.0) == (magnitude < 1e20)


@pytest.mark.parametrize("shape", [(2, 3, 4, 16), (4, 6, 7, 64), (4, 6, 7, 384), (1, 8, 21, 1536)])
def test_valid_and_scale_finds_every_non_finite_token(shape):
    """NaN or inf first, inside or last in a token makes it invalid, at every width (XLA:CPU's
    vectorised max reduction drops NaN on wide rows, so the max alone cannot tell)."""
    rng = np.random.default_rng(2)
    d = shape[-1]
    x = rng.normal(size=shape).astype(np.float32)
    tokens = rng.permutation(np.prod(shape[:3]))[:9]
    for k, (token, value) in enumerate(zip(tokens, [np.nan, np.inf, -np.inf] * 3)):
        x.reshape(-1, d)[token, (0, d // 2, d - 1)[k % 3]] = value
    valid, scale = valid_and_scale(jnp.asarray(x))
    np.testing.assert_array_equal(valid, np.isfinite(x).all(axis=-1))
    assert float(scale) == 1.0


# ----------------------------------------------------------------------------- both paths vs the reference


def _motion(path, *args):
    if path == "interpret":
        return motion_match_pallas(*args, block_sizes=MOTION_BLOCKS, interpret=True)
    return motion_match_xla(*args)


def _focal(path, *args):
    if path == "interpret":
        return focal_reconstruction_pallas(*args, block_sizes=FOCAL_BLOCKS, interpret=True)
    return focal_reconstruction_xla(*args)


PATHS = ["interpret", "xla"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
def test_motion_paths_match_reference(path, dtype):
    x, valid = _video(2, dtype=dtype)
    args = (_as(x, dtype), jnp.asarray(valid), 1e-4)
    got, got_has = _motion(path, *args)
    want, want_has = motion_match_reference(*args)
    _, _, near = motion_oracle(np.where(valid[..., None], x, 0), valid, 1e-4, 1)
    np.testing.assert_array_equal(got_has, want_has)
    np.testing.assert_array_equal(np.asarray(got)[~near], np.asarray(want)[~near])
    assert np.asarray(want_has).sum() > 10 and np.abs(np.asarray(want)).sum() > 10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
def test_focal_paths_match_reference(path, dtype):
    x, valid = _video(3, dtype=dtype)
    args = (_as(x, dtype), jnp.asarray(valid), 0.5)
    got, got_count = _focal(path, *args)
    want, want_count = focal_reconstruction_reference(*args)
    np.testing.assert_array_equal(got_count, want_count)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype])
    assert np.isfinite(np.asarray(got)).all() and np.asarray(want).max() > 0.5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
def test_box_sum_paths_match_reference(path, dtype):
    x, valid = _video(4, shape=(4, 5, 6, 3), dtype=dtype)
    if path == "interpret":
        got = jnp.where(jnp.asarray(valid)[..., None], _as(x, dtype).astype(jnp.float32), 0.0)
        for axis, r in enumerate((1, 2, 1)):
            got = axis_sum_pallas(got, axis=axis, radius=r, interpret=True)
    else:
        got, _ = box_sum_xla(_as(x, dtype), jnp.asarray(valid), (1, 2, 1))
    want, counts = box_sum_reference(_as(x, dtype), jnp.asarray(valid), (1, 2, 1))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype])
    oracle, oracle_counts = window_oracle(np.asarray(_as(x, dtype).astype(jnp.float32)), valid, (1, 2, 1))
    np.testing.assert_allclose(want, oracle, rtol=0, atol=TOLERANCE[dtype])
    np.testing.assert_array_equal(counts, oracle_counts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", PATHS)
def test_window_contrast_paths_match_reference(path, dtype):
    x, valid = _video(5, dtype=dtype)
    args = (_as(x, dtype), jnp.asarray(valid))
    got, got_count = window_contrast(*args, impl=path)
    want, want_count = window_contrast_reference(*args)
    np.testing.assert_array_equal(got_count, want_count)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype])
    assert np.asarray(want).max() > 0.5


def test_motion_kernel_tie_rules():
    """Identical candidates tie exactly: the first in row-major order wins, and the stay
    bias beats an identical neighbour."""
    rng = np.random.default_rng(6)
    frame = rng.normal(size=(3, 4, 5)).astype(np.float32)
    frame[1, 2] = frame[1, 1]  # token (1, 1) has an identical neighbour to its right
    x = jnp.asarray(np.stack([frame, frame]))
    valid = jnp.ones((2, 3, 4), bool)
    for bias, expected in ((1e-4, (0, 0)), (0.0, (0, -1))):
        got, _ = motion_match_pallas(x, valid, bias, block_sizes=MOTION_BLOCKS, interpret=True)
        want, _ = motion_match_xla(x, valid, bias)
        assert tuple(np.asarray(got)[1, 1, 2]) == tuple(np.asarray(want)[1, 1, 2]) == expected


@pytest.mark.parametrize("seed", range(4))
def test_motion_xla_identical_candidates_tie_exactly(seed):
    """A video of one repeated token: every candidate is identical, so (without the stay
    bias) the first in-grid candidate in row-major order must win everywhere, whichever
    code path (head, edge, bulk) computed its dot product and norm."""
    rng = np.random.default_rng(seed)
    d, h, w = int(rng.integers(3, 40)), int(rng.integers(2, 5)), int(rng.integers(2, 6))
    token = rng.normal(size=d) * 10.0 ** rng.uniform(-3, 3)
    x = jnp.asarray(np.tile(token.astype(np.float32), (3, h, w, 1)))
    got, _ = jax.jit(motion_match_xla)(x, jnp.ones((3, h, w), bool), 0.0)
    for i in range(h):
        for j in range(w):
            first = next((dh, dw) for dh, dw in candidate_offsets(1) if 0 <= i + dh < h and 0 <= j + dw < w)
            assert tuple(np.asarray(got)[1, i, j]) == tuple(np.asarray(got)[2, i, j]) == first


# ----------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("radius", [1, 2])
def test_references_match_brute_force_loops(radius):
    """The plain references against the algorithm by loops (float64): motion, focal, windows."""
    x, valid = _video(9, shape=(3, 5, 6, 7))
    clean = np.where(valid[..., None], x, 0)
    got, got_has = motion_match_reference(jnp.asarray(x), jnp.asarray(valid), 1e-4, radius=radius)
    want, want_has, near = motion_oracle(clean, valid, 1e-4, radius)
    np.testing.assert_array_equal(got_has, want_has)
    np.testing.assert_array_equal(np.asarray(got)[~near], want[~near])
    raw, count = focal_reconstruction_reference(jnp.asarray(x), jnp.asarray(valid), 0.5)
    want_raw, want_count = focal_oracle(clean, valid, 0.5)
    np.testing.assert_array_equal(count, want_count)
    np.testing.assert_allclose(raw, want_raw, rtol=0, atol=1e-5)
    surround = (1, radius, radius)
    raw, count = window_contrast_reference(jnp.asarray(x), jnp.asarray(valid), center_radius=(0, 1, 1),
                                           surround_radius=surround)
    want_raw, want_count = contrast_oracle(clean, valid, (0, 1, 1), surround)
    np.testing.assert_array_equal(count, want_count)
    np.testing.assert_allclose(raw, want_raw, rtol=0, atol=1e-5)


@pytest.mark.parametrize("radius", [1, 2])
def test_motion_xla_brute_force(radius):
    x, valid = _video(7, shape=(4, 5, 6, 7))
    got, got_has = jax.jit(functools.partial(motion_match_xla, radius=radius))(
        jnp.asarray(x), jnp.asarray(valid), 1e-4
    )
    want, want_has, near = motion_oracle(np.where(valid[..., None], x, 0), valid, 1e-4, radius)
    np.testing.assert_array_equal(got_has, want_has)
    np.testing.assert_array_equal(np.asarray(got)[~near], want[~near])


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_focal_xla_brute_force(temperature):
    x, valid = _video(8, shape=(3, 6, 5, 7))
    got, count = jax.jit(focal_reconstruction_xla)(jnp.asarray(x), jnp.asarray(valid), temperature)
    want, want_count = focal_oracle(np.where(valid[..., None], x, 0), valid, temperature)
    np.testing.assert_array_equal(count, want_count)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_focal_xla_cancelling_neighbours():
    """Neighbours +-u around a token orthogonal to u give equal weights and v_hat ~ 0: the
    quadratic form of the fast path is ill-conditioned there and the direct path takes
    over, matching brute force."""
    x = _cancelling_video()
    valid = np.ones((1, 3, 3), bool)
    got, _ = jax.jit(focal_reconstruction_xla)(jnp.asarray(x), jnp.asarray(valid), 1.0)
    want, _ = focal_oracle(x, valid, 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def _cancelling_video(seed=9, d=32):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    a = rng.normal(size=d)
    a -= (a @ u) / (u @ u) * u
    x = np.zeros((1, 3, 3, d))
    x[0, 1, 1] = a
    for k, (dh, dw) in enumerate(NEIGHBOUR_OFFSETS):
        x[0, 1 + dh, 1 + dw] = (-1) ** k * u + 1e-3 * rng.normal(size=d)
    return x.astype(np.float32)


def test_focal_xla_batched_takes_each_videos_own_path():
    """Under vmap the direct path runs only for a batch that needs it, and each video gets
    exactly what it gets alone: a cancelling video beside an ordinary one, a batch of two
    ordinary ones, a temperature sweep over one video, and a nested vmap."""
    ordinary, _ = _video(3, shape=(1, 3, 3, 32))
    ordinary = np.where(np.isfinite(ordinary), ordinary, 0).astype(np.float32)
    videos = jnp.asarray(np.stack([_cancelling_video(), ordinary, ordinary * 2]))
    valid = jnp.ones(videos.shape[:-1], bool)
    alone = [focal_reconstruction_xla(videos[i], valid[i], 1.0)[0] for i in range(3)]
    batched = jax.jit(jax.vmap(focal_reconstruction_xla, in_axes=(0, 0, None)))
    for idx in ([0, 1, 2], [1, 2]):
        got, _ = batched(videos[jnp.asarray(idx)], valid[jnp.asarray(idx)], 1.0)
        for row, i in enumerate(idx):
            np.testing.assert_array_equal(got[row], alone[i])
    temps = jnp.asarray([1.0, 0.5])
    per_temp = jax.vmap(focal_reconstruction_xla, in_axes=(None, None, 0))
    sweep, _ = per_temp(videos[0], valid[0], temps)
    for row, temp in enumerate(temps):
        alone_t, _ = focal_reconstruction_xla(videos[0], valid[0], temp)
        np.testing.assert_array_equal(sweep[row], alone_t)
    inner = jax.vmap(focal_reconstruction_xla, in_axes=(0, 0, None))
    nested, _ = jax.vmap(inner, in_axes=(0, 0, None))(
        videos.reshape((3, 1) + videos.shape[1:]), valid.reshape((3, 1) + valid.shape[1:]), 1.0
    )
    for i in range(3):
        np.testing.assert_array_equal(nested[i, 0], alone[i])
    want, _ = focal_oracle(np.asarray(videos[0]), np.asarray(valid[0]), 1.0)
    np.testing.assert_allclose(alone[0], want, rtol=0, atol=1e-4)


def test_focal_batching_rule_when_only_the_fast_values_vary():
    """The batching rule when the video is shared and only the predicate and fast-path
    values are batched: the direct path is computed once and picked per batch entry."""
    x = jnp.asarray(_cancelling_video())
    valid = jnp.ones(x.shape[:-1], bool)
    weights = jnp.full((8,) + x.shape[:-1], 1 / 8, jnp.float32)
    fast = jnp.stack([jnp.zeros(9), jnp.ones(9)])
    batched = jax.vmap(_unless_cancelling, in_axes=(0, None, None, None, None, 0, 0))
    got_dot, got_sq = batched(jnp.asarray([True, False]), x, valid, weights, 1.0, fast, fast)
    want_dot, want_sq = _direct_terms(x, valid, weights, 1.0)
    np.testing.assert_array_equal(got_dot[0], want_dot)
    np.testing.assert_array_equal(got_sq[0], want_sq)
    np.testing.assert_array_equal(got_dot[1], fast[1])
    np.testing.assert_array_equal(got_sq[1], fast[1])


@pytest.mark.parametrize("cancelling", [False, True], ids=["fast", "direct"])
def test_focal_xla_differentiable(cancelling):
    """Reverse mode goes through either path (the batching rule must not block it): the
    derivative in the temperature matches a central difference, alone and under vmap."""
    if cancelling:
        x = jnp.asarray(_cancelling_video())
    else:
        x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 3, 3, 32)), jnp.float32)
    valid = jnp.ones(x.shape[:-1], bool)

    def total(temp, video=x):
        return jnp.sum(focal_reconstruction_xla(video, valid, temp)[0])

    grad = jax.jit(jax.grad(total))(0.7)
    eps = 1e-2
    central = (total(0.7 + eps) - total(0.7 - eps)) / (2 * eps)
    assert grad != 0
    np.testing.assert_allclose(grad, central, rtol=2e-2)
    batched = jax.vmap(jax.grad(total), in_axes=(None, 0))(0.7, jnp.stack([x, x]))
    np.testing.assert_allclose(batched, [grad, grad], rtol=1e-6)
    tokens_grad = jax.grad(lambda v: total(0.7, v))(x)
    assert np.all(np.isfinite(tokens_grad)) and np.any(tokens_grad != 0)


@pytest.mark.parametrize("center,surround", [((1, 1, 1), (1, 2, 2)), ((0, 1, 1), (2, 2, 3))])
def test_window_contrast_xla_brute_force(center, surround):
    x, valid = _video(10, shape=(5, 6, 5, 4))
    got, count = jax.jit(
        functools.partial(window_contrast_xla, center_radius=center, surround_radius=surround)
    )(jnp.asarray(x), jnp.asarray(valid))
    want, want_count = contrast_oracle(np.where(valid[..., None], x, 0), valid, center, surround)
    np.testing.assert_array_equal(count, want_count)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_xla_paths_read_raw_tokens_through_the_scale():
    """Raw huge tokens with `valid_and_scale`'s scale give what prepared tokens give."""
    x, valid = _video(11)
    huge = np.where(valid[..., None], x * np.float32(2.0**100), np.nan).astype(np.float32)
    mask, scale = valid_and_scale(jnp.asarray(huge), jnp.asarray(valid))
    assert float(scale) < 1.0
    prepared, _ = prepare_tokens(jnp.asarray(huge), jnp.asarray(valid))
    for op in (
        lambda v, s: motion_match_xla(v, mask, 1e-4, scale=s),
        lambda v, s: focal_reconstruction_xla(v, mask, 1.0, scale=s),
        lambda v, s: window_contrast_xla(v, mask, scale=s),
    ):
        op = jax.jit(op)
        for got, want in zip(op(jnp.asarray(huge), scale), op(prepared, jnp.float32(1.0))):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_xla_paths_batch_under_vmap():
    x, valid = _video(12)
    xs, masks = jnp.stack([jnp.asarray(x), jnp.asarray(x)[::-1]]), jnp.stack([valid, valid[::-1]])
    ops = (
        lambda v, m: motion_match_xla(v, m, 1e-4),
        lambda v, m: focal_reconstruction_xla(v, m, 1.0),
        lambda v, m: window_contrast_xla(v, m),
    )
    for op in ops:
        batched = jax.jit(jax.vmap(op))(xs, masks)
        for i in range(2):
            for got, want in zip(batched, jax.jit(op)(xs[i], masks[i])):
                np.testing.assert_allclose(np.asarray(got)[i], want, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- GPU lowering

REALISTIC = (32, 24, 24, 1536)
LOWERINGS = {
    "tfs_motion_match": lambda v, m: motion_match(v, m, 1e-4, impl="pallas"),
    "tfs_focal_reconstruction": lambda v, m: focal_reconstruction(v, m, 1.0, impl="pallas"),
    "tfs_box_sum_axis1": lambda v, m: box_sum(v, m, (1, 2, 2), impl="pallas"),
    "tfs_box_sum_axis0": lambda v, m: window_contrast(v, m, impl="pallas"),
}


@pytest.mark.parametrize("name", list(LOWERINGS))
def test_kernels_lower_for_cuda(name):
    """Each kernel lowers to a Triton custom call for CUDA, on a CPU-only machine, at a
    realistic shape (`jax.export` refuses Pallas calls; trace/lower does not).

    jax 0.11 no longer falls back to compute capability 9.0 when no GPU is attached: the
    target GPU is named by an abstract device (jax 0.10 ignores it and uses 9.0)."""
    args = (jax.ShapeDtypeStruct(REALISTIC, jnp.float32), jax.ShapeDtypeStruct(REALISTIC[:3], jnp.bool_))
    h100 = jax.sharding.AbstractDevice(device_kind="NVIDIA H100", num_cores=None, platform="gpu")
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((), (), abstract_device=h100)):
        traced = jax.jit(LOWERINGS[name]).trace(*args)
        text = traced.lower(lowering_platforms=("cuda",)).as_text()
    assert "__gpu$xla.gpu.triton" in text
    assert name in text
