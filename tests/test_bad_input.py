"""The bad-input matrix: every public entry point refuses bad input with a ValueError that
names the problem, before anything is traced (the CLI: exit status 2 and one line).

Config fields are covered field by field in test_config.py (BAD_FIELDS, 41 cases); this
file crosses the token, mask, key and option cases with every entry point that takes them.
"""

import jax
import numpy as np
import pytest

import tfs_jax
from tfs_jax import baselines
from tfs_jax import cli
from tfs_jax.distributed import prune_batch

CFG = tfs_jax.TFSConfig(num_clusters=2, kmeans_iters=1)
GOOD = np.zeros((2, 4, 4, 3), np.float32)

# (case, tokens, keyword arguments, what the message must name)
CASES = [
    ("rank 3", np.zeros((4, 4, 3), np.float32), {}, "rank"),
    ("rank 5", np.zeros((1, 2, 4, 4, 3), np.float32), {}, "rank"),
    ("empty T", np.zeros((0, 4, 4, 3), np.float32), {}, "empty"),
    ("empty D", np.zeros((2, 4, 4, 0), np.float32), {}, "empty"),
    ("int tokens", np.zeros((2, 4, 4, 3), np.int32), {}, "float"),
    ("uint8 tokens", np.zeros((2, 4, 4, 3), np.uint8), {}, "float"),
    ("complex tokens", np.zeros((2, 4, 4, 3), np.complex64), {}, "float"),
    ("bool tokens", np.zeros((2, 4, 4, 3), bool), {}, "float"),
    ("list tokens", [[[[0.0]]]], {}, "array"),
    ("valid of another shape", GOOD, {"valid": np.ones((2, 4, 5), bool)}, "valid"),
    ("valid of another rank", GOOD, {"valid": np.ones((2, 16), bool)}, "valid"),
    ("float valid", GOOD, {"valid": np.ones((2, 4, 4), np.float32)}, "valid"),
    ("key of three words", GOOD, {"key": np.zeros(3, np.uint32)}, "key"),
    ("key of floats", GOOD, {"key": np.zeros(2, np.float32)}, "key"),
    ("a batch of keys", GOOD, {"key": jax.random.split(jax.random.key(0), 2)}, "key"),
    ("unknown impl", GOOD, {"impl": "cuda"}, "impl"),
]

ENTRY_POINTS = {
    "tfs_prune": (lambda x, **kw: tfs_jax.tfs_prune(x, CFG, **kw), {"valid", "key", "impl"}),
    "motion_vectors": (tfs_jax.motion_vectors, {"valid", "impl"}),
    "regional_saliency": (tfs_jax.regional_saliency, {"valid", "impl"}),
    "focal_saliency": (tfs_jax.focal_saliency, {"valid", "impl"}),
    "baselines.uniform": (lambda x, **kw: baselines.uniform(x, 0.5, **kw), {"valid", "key"}),
    "baselines.divprune": (lambda x, **kw: baselines.divprune(x, 0.5, **kw), {"valid", "key"}),
}

MATRIX = [
    pytest.param(entry, tokens, kwargs, match, id=f"{entry}: {case}")
    for entry, (_, accepts) in ENTRY_POINTS.items()
    for case, tokens, kwargs, match in CASES
    if set(kwargs) <= accepts
]


def test_the_matrix_is_large():
    assert len(MATRIX) >= 25


@pytest.mark.parametrize("entry, tokens, kwargs, match", MATRIX)
def test_entry_point_refuses_bad_input(entry, tokens, kwargs, match):
    fn, _ = ENTRY_POINTS[entry]
    with pytest.raises(ValueError, match=match):
        fn(tokens, **kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: tfs_jax.tfs_prune(GOOD, {"retain_ratio": 0.5}), "config"),
        (lambda: tfs_jax.tfs_prune(GOOD, tfs_jax.TFSConfig(retain_ratio=0.0)), "retain_ratio"),
        (lambda: baselines.random(GOOD, 1.5), "retain_ratio"),
        (lambda: baselines.evs(GOOD, 0), "retain_ratio"),
        (lambda: prune_batch(GOOD, CFG), "B, T, H, W, D"),
        (lambda: prune_batch(GOOD[None], CFG, valid=np.ones((1, 2, 4), bool)), "valid"),
        (lambda: prune_batch(GOOD[None].astype(np.int32), CFG), "float"),
        (lambda: tfs_jax.dynamic_saliency(np.zeros((2, 4, 4, 3), np.int32), np.ones((2, 4, 4), bool)), "motion"),
        (lambda: tfs_jax.segment_frames(np.zeros((2, 4, 5), np.float32), np.ones((2, 4, 4), bool)), "dynamic"),
        (lambda: tfs_jax.clustering_features(np.zeros((2, 4, 4, 2)), np.zeros(2, np.int32), np.ones((2, 4, 4), bool)), "saliency"),
        (lambda: tfs_jax.segmented_kmeans(np.zeros((2, 4, 4, 6)), np.zeros(3, np.int32), np.ones((2, 4, 4), bool), jax.random.key(0)), "segment"),
    ],
    ids=["config not a TFSConfig", "ratio 0", "baseline ratio above 1", "baseline ratio 0",
         "prune_batch rank", "prune_batch valid", "prune_batch int tokens", "motion shape",
         "S_M shape", "saliency shape", "segment shape"],
)
def test_other_entry_points_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_check_finite_reports_count_and_place():
    v = np.zeros((2, 3, 3, 2), np.float32)
    v[1, 2, 0, 1] = np.nan
    v[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"2 valid token\(s\).*\(0, 0, 0\), \(1, 2, 0\)"):
        tfs_jax.check_finite(v)
    valid = np.ones((2, 3, 3), bool)
    valid[0, 0, 0] = valid[1, 2, 0] = False
    tfs_jax.check_finite(v, valid)  # padding may hold anything


def test_check_finite_on_a_jax_array_says_the_same():
    """A JAX array is counted on its device; the message is the numpy one."""
    import jax.numpy as jnp

    v = np.ones((2, 3, 3, 4), np.float32)
    v[1, 2, 0, 3] = np.nan
    v[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError) as on_host:
        tfs_jax.check_finite(v)
    with pytest.raises(ValueError) as on_device:
        tfs_jax.check_finite(jnp.asarray(v))
    assert str(on_device.value) == str(on_host.value)
    valid = np.ones((2, 3, 3), bool)
    valid[0, 0, 0] = valid[1, 2, 0] = False
    tfs_jax.check_finite(jnp.asarray(v), jnp.asarray(valid))
    tfs_jax.check_finite(jnp.asarray(v, jnp.bfloat16)[:, :, 1:])  # bfloat16, all finite


def test_cli_unreadable_video_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["prune", str(tmp_path / "missing.mp4"), "--ratio", "0.25", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.mp4" in err[0] and not out.exists()
