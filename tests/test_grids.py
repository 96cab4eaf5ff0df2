"""Grids one token high or wide: every path of `tfs_prune` against the float64 reference.

A very wide clip, or a Qwen frame 28-41 pixels tall, gives a token grid one row high;
a tall one, one column wide. Motion matching reads the video as flat tokens, and on a grid
at most `motion_radius` rows high its forward candidates fall past the last token (issue
20: `(8, 1, 120, 32)` raised `TypeError` in `offset_dots`). Each case here is checked
stage by stage with `tfs_jax.reference.spec.check_stages`, as `test_spec_reference.py` does.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax

from experiments.lib.acceptance import kmeans_uniforms
from tfs_jax import TFSConfig
from tfs_jax import tfs_prune
from tfs_jax.kernels.motion_match import motion_match_reference
from tfs_jax.kernels.motion_match import motion_match_xla
from tfs_jax.reference import spec as ref

# radius 2 on a two-row grid reaches past the last token as radius 1 does on one row
WIDE = dict(motion_radius=2, surround_radius=(2, 2, 2), retain_ratio=0.35, refill=True,
            num_clusters=4, kmeans_iters=5, motion_window=(1, 2, 2))
CASES = [
    ((6, 1, 9, 8), {}, "xla"),
    ((6, 1, 9, 8), {}, "interpret"),
    ((6, 9, 1, 8), {}, "xla"),
    ((6, 9, 1, 8), {}, "interpret"),
    ((6, 1, 9, 8), WIDE, "xla"),
    ((6, 2, 7, 8), WIDE, "xla"),
    ((4, 1, 1, 8), WIDE, "xla"),
    ((8, 1, 120, 32), {}, "xla"),  # the grid
]


def _video(shape, seed=0):
    """Random tokens with a token that moves one step per frame along the grid's longer
    side, so that motion has something to find on a thin grid."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t, h, w, _ = shape
    for f in range(t):
        x[f, f % h if h > w else 0, f % w] += 3.0
    return x


@pytest.mark.parametrize("shape,config,impl", CASES,
                         ids=[f"{'x'.join(map(str, s))}-{'wide' if c else 'default'}-{i}"
                              for s, c, i in CASES])
def test_thin_grid_matches_the_reference(shape, config, impl):
    x = _video(shape)
    cfg = TFSConfig(**config)
    result = tfs_prune(x, cfg, impl=impl, key=jax.random.key(0))
    out = {f: np.asarray(getattr(result, f)) for f in ref.RESULT_FIELDS}
    out["kmeans_uniforms"] = kmeans_uniforms(jax.random.key(0), shape[:3], cfg.num_clusters)
    failures = ref.check_stages(x, None, ref.full_config(config), out)
    assert not failures, "\n".join(failures)
    assert 0 < int(result.num_kept) <= x[..., 0].size


@pytest.mark.parametrize("shape,radius", [((5, 1, 6, 4), 1), ((5, 2, 3, 4), 2),
                                          ((3, 1, 1, 4), 1), ((5, 6, 1, 4), 1)])
def test_motion_xla_on_thin_grids_equals_its_reference(shape, radius):
    """The flat-offset path against the shifted-copy reference of the same module: the
    tail of queries whose candidates reach past the last token goes through the gather."""
    x = jax.numpy.asarray(_video(shape, seed=1))
    valid = jax.numpy.ones(shape[:3], bool)
    got = motion_match_xla(x, valid, 1e-4, radius=radius)
    want = motion_match_reference(x, valid, 1e-4, radius=radius)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    assert np.asarray(got[1]).any(), "no token had a candidate: the case tests nothing"
    if shape[1] * shape[2] > 1:
        assert np.asarray(got[0]).any(), "no motion found: the case tests nothing"
