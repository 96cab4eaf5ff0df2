"""LLaVA-OneVision in JAX against transformers 4.51.3, on tiny random checkpoints it writes.

`tests/_llava_checkpoint.py` builds two checkpoints (sharded `save_pretrained`): untied with
`vision_feature_layer=-2`, and tied with the list `[1, -1]`; the prompt has two videos of
three frames with text on both sides. At float32 with matmul precision "highest" the video
features, every LM layer's hidden states and the logits agree within 1e-4, greedy generation
token for token (each step's scores within 1e-4), and pruned prompts (TFS and two baselines,
renumbered and original positions) agree with transformers' LM fed the kept embeddings at
those positions. Each check prints its largest difference (`-s`: "MAXDIFF ...").

The hand-computed cases (feature layers, the bilinear weights) and the bad-input checks run
without torch; the parity tests skip without torch/transformers and fail if transformers is
not 4.51.3.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfs_jax
from tfs_jax import models
from tfs_jax.models.llava_onevision import config as config_module
from tfs_jax.models.llava_onevision import vision
from tests import _parity
from tests import _llava_checkpoint as ck

TOL = 1e-4
BF16_TOL = 0.05  # of max |logit|: bfloat16 weights and activations (8 mantissa bits)


_report = _parity.report
_highest_precision = _parity.highest_precision  # autouse


def _torch():
    return _parity.require_torch(ck.TRANSFORMERS_VERSION, "LLaVA-OneVision")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """`{name: (folder, transformers model, feature layer)}`."""
    _torch()
    out = {}
    for name, tied, layer in (("untied", False, -2), ("tied", True, [1, -1])):
        folder = tmp_path_factory.mktemp(f"llava_{name}")
        out[name] = (folder, ck.write_checkpoint(folder, tied=tied, feature_layer=layer, seed=int(tied)), layer)
    return out


@pytest.fixture(scope="module")
def inputs():
    return ck.prompt_inputs()


def _hf_video_features(model, inputs, layer):
    """transformers' video features, one newline appended per video: `(V, T q q + 1, d)`."""
    torch = _torch()
    with torch.no_grad():
        feats = model.get_video_features(torch.from_numpy(inputs["pixel_values_videos"]),
                                         vision_feature_layer=layer, vision_feature_select_strategy="full")
        newline = model.image_newline[None, None].expand(feats.shape[0], 1, -1)
        return torch.cat([feats, newline], dim=1).numpy()


# ------------------------------------------------------------------ by hand, no torch


def test_feature_layers_normalise_as_transformers_indexes_hidden_states():
    assert config_module.feature_layers(-1, 3) == (3,)       # the last layer's output
    assert config_module.feature_layers(-2, 3) == (2,)
    assert config_module.feature_layers([1, -1], 3) == (1, 3)
    for bad in (0, -4, 4, [], [1.5], "1"):
        with pytest.raises(ValueError, match="vision_feature_layer"):
            config_module.feature_layers(bad, 3)


def test_bilinear_weights_by_hand():
    # in 3 -> out 2, scale 1.5: sources 0.25 and 1.75
    np.testing.assert_allclose(vision.bilinear_matrix(3, 2), [[0.75, 0.25, 0], [0, 0.25, 0.75]])
    # in 4 -> out 2: sources 0.5 and 2.5, a 2x2 average
    np.testing.assert_allclose(vision.bilinear_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # in 7 -> out 4 (the tiny grid), scale 1.75: sources 0.375, 2.125, 3.875, 5.625
    m = vision.bilinear_matrix(7, 4)
    np.testing.assert_allclose(m[0, :2], [0.625, 0.375])
    np.testing.assert_allclose(m[3, 5:], [0.375, 0.625])
    # 27 -> 14 at 384 px: every row a convex pair of neighbours, not a 2x2 average
    m = vision.bilinear_matrix(27, 14)
    np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-6)
    assert (np.count_nonzero(m, axis=1) <= 2).all() and not np.allclose(m[1, 2:4], 0.5)


def test_config_refusals():
    raw = json.loads(json.dumps({"model_type": "llava_onevision", "vision_feature_select_strategy": "default"}))
    with pytest.raises(ValueError, match="vision_feature_select_strategy"):
        config_module.LlavaOnevisionConfig.from_dict(raw)
    with pytest.raises(ValueError, match="use_sliding_window"):
        config_module.LlavaOnevisionConfig.from_dict({"text_config": {"use_sliding_window": True}})
    with pytest.raises(ValueError, match="projector_hidden_act"):
        config_module.LlavaOnevisionConfig.from_dict({"projector_hidden_act": "relu"})


# ------------------------------------------------------------------ parity


def test_pooling_equals_torch_interpolate():
    torch = _torch()
    x = np.random.default_rng(0).standard_normal((2, 27, 27, 5)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=[14, 14],
                                          mode="bilinear").permute(0, 2, 3, 1).numpy()
    assert _report("pool 27->14", float(np.abs(np.asarray(vision.pool(jnp.asarray(x))) - ref).max())) < 1e-5


@pytest.mark.parametrize("name", ["untied", "tied"])
def test_video_features_equal_transformers(checkpoints, inputs, name):
    folder, hf, layer = checkpoints[name]
    model = models.load(folder)
    ours = np.asarray(model.vision(inputs["pixel_values_videos"]))
    ref = _hf_video_features(hf, inputs, layer)[:, :-1]
    assert ours.shape == (2, ck.FRAMES, ck.POOLED, ck.POOLED, ck.TEXT["hidden_size"])
    assert _report(f"video features ({name})", float(np.abs(ours.reshape(ref.shape) - ref).max())) < TOL


@pytest.mark.parametrize("name", ["untied", "tied"])
def test_hidden_states_and_logits_equal_transformers(checkpoints, inputs, name):
    torch = _torch()
    folder, hf, _ = checkpoints[name]
    model = models.load(folder)
    out = model.forward(inputs["input_ids"], pixel_values_videos=inputs["pixel_values_videos"],
                        hidden_states=True)
    with torch.no_grad():
        ref = hf(**ck.torch_inputs(inputs), output_hidden_states=True)
    layers = ck.TEXT["num_hidden_layers"]
    hidden = max(float(np.abs(np.asarray(out.hidden_states[i]) - ref.hidden_states[i][0].numpy()).max())
                 for i in range(layers))
    assert _report(f"hidden states ({name})", hidden) < TOL
    assert _report(f"logits ({name})", float(np.abs(np.asarray(out.logits) - ref.logits[0].numpy()).max())) < TOL
    np.testing.assert_array_equal(out.positions, np.tile(np.arange(len(inputs["input_ids"])), (3, 1)))
    assert out.keep is None and out.rope_delta == 0


def test_greedy_generation_equals_transformers(checkpoints, inputs):
    torch = _torch()
    folder, hf, _ = checkpoints["untied"]
    model = models.load(folder)
    with torch.no_grad():
        ref = hf.generate(**ck.torch_inputs(inputs), max_new_tokens=16, min_new_tokens=16, do_sample=False,
                          output_logits=True, return_dict_in_generate=True)  # raw, before min_new_tokens masks eos
    want = ref.sequences[0, len(inputs["input_ids"]):].numpy()
    ids = model.generate(inputs["input_ids"], pixel_values_videos=inputs["pixel_values_videos"],
                         max_new_tokens=16)
    np.testing.assert_array_equal(ids, want)
    prompt, _ = model.prepare(inputs["input_ids"], pixel_values_videos=inputs["pixel_values_videos"])
    logits, cache, _ = model.prefill(prompt, cache_len=256)
    worst = 0.0
    for step, token in enumerate(want):
        worst = max(worst, float(np.abs(np.asarray(logits) - ref.logits[step][0].numpy()).max()))
        logits, cache = model.decode(cache, int(token))
    assert _report("generation scores (16 steps)", worst) < TOL


@pytest.mark.parametrize("positions", ["renumber", "original"])
def test_pruned_logits_equal_transformers_lm_on_kept_embeddings(checkpoints, inputs, positions):
    torch = _torch()
    folder, hf, layer = checkpoints["untied"]
    model = models.load(folder)
    ids = inputs["input_ids"]
    video = ids == ck.VIDEO
    with torch.no_grad():
        embeds = hf.get_input_embeddings()(torch.from_numpy(ids)).numpy()
    embeds[video] = _hf_video_features(hf, inputs, layer).reshape(-1, embeds.shape[1])
    worst = 0.0
    for prune, ratio in ((tfs_jax.TFSConfig(retain_ratio=0.5), None), ("uniform", 0.25), ("divprune", 0.5)):
        out = model.forward(ids, pixel_values_videos=inputs["pixel_values_videos"], prune=prune,
                            retain_ratio=ratio, positions=positions)
        keep = np.ones(len(ids), bool)
        keep[video] = out.keep
        newlines = np.flatnonzero(video)[np.arange(1, 3) * ck.video_tokens() - 1]
        assert keep[newlines].all() and 0 < out.keep.sum() < video.sum()
        pos = np.arange(len(ids))[keep] if positions == "original" else np.arange(keep.sum())
        np.testing.assert_array_equal(out.positions[0], pos)
        with torch.no_grad():
            ref = hf.language_model(inputs_embeds=torch.from_numpy(embeds[keep])[None],
                                    position_ids=torch.from_numpy(pos)[None]).logits[0].numpy()
        worst = max(worst, float(np.abs(np.asarray(out.logits) - ref).max()))
        assert out.rope_delta == (len(ids) - keep.sum() if positions == "original" else 0)
    assert _report(f"pruned logits ({positions})", worst) < TOL


def test_bfloat16_runs_within_tolerance(checkpoints, inputs):
    torch = _torch()
    folder, hf, _ = checkpoints["untied"]
    model = models.load(folder, dtype=jnp.bfloat16)
    assert model.dtype == jnp.bfloat16
    out = model.forward(inputs["input_ids"], pixel_values_videos=inputs["pixel_values_videos"])
    with torch.no_grad():
        ref = hf(**ck.torch_inputs(inputs)).logits[0].numpy()
    diff = float(np.abs(np.asarray(out.logits) - ref).max())
    assert np.isfinite(np.asarray(out.logits)).all()
    assert _report("bfloat16 logits (share of max |logit|)", diff / np.abs(ref).max()) < BF16_TOL


@pytest.mark.parametrize("shape", ["native", "portrait", "small"])
def test_processor_equals_llava_onevision_image_processor_patch_0(shape):
    _torch()
    from transformers import LlavaOnevisionImageProcessor

    from tfs_jax import video
    from tfs_jax.models.llava_onevision.processor import ProcessorConfig
    from tfs_jax.models.llava_onevision.processor import preprocess_video

    frames = video.sample_video(_clip(), progress=False).frames[:3]
    frames = {"native": frames, "portrait": frames.transpose(0, 2, 1, 3), "small": frames[:, :40, :50]}[shape]
    frames = np.ascontiguousarray(frames)
    settings = dict(size={"height": 384, "width": 384}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    reference = LlavaOnevisionImageProcessor(**settings)
    ref = np.stack([reference(f, return_tensors="np")["pixel_values"][0, 0] for f in frames])
    ours = preprocess_video(frames, config=ProcessorConfig(image_mean=(0.5,) * 3, image_std=(0.5,) * 3))
    assert ours.shape == (1, len(frames), 3, 384, 384)
    assert _report(f"processor ({shape})", float(np.abs(ours[0] - ref).max())) == 0.0


def _clip():
    import pathlib

    return pathlib.Path(__file__).resolve().parent / "data" / "tiny_clip.mp4"


# ------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def tiny():
    return models.load(_clip().parent / "tiny-llava-onevision", dtype=jnp.float32)


def test_bad_prompts_are_refused(tiny):
    pixels = np.zeros((1, 2, 3, 60, 60), np.float32)
    video = tiny.config.video_token_id
    right = [1] + [video] * (2 * 16 + 1) + [2]
    tiny.prepare(np.asarray(right), pixel_values_videos=pixels)  # the right count passes
    with pytest.raises(ValueError, match="video placeholders"):
        tiny.forward(np.asarray(right[:-2] + [2]), pixel_values_videos=pixels)
    with pytest.raises(ValueError, match="image"):
        tiny.forward(np.asarray(right + [tiny.config.image_token_id]), pixel_values_videos=pixels)
    with pytest.raises(ValueError, match="positions"):
        tiny.forward(np.asarray(right), pixel_values_videos=pixels, positions="gaps")
    with pytest.raises(ValueError, match="pixel_values_videos"):
        tiny.forward(np.asarray(right), pixel_values_videos=np.zeros((1, 2, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="retain_ratio"):
        tiny.forward(np.asarray(right), pixel_values_videos=pixels, prune="uniform")
    for bad in (tiny.config.text.vocab_size, -1):  # a gather out of range clamps or wraps
        with pytest.raises(ValueError, match=r"input_ids holds 1 ids outside \[0, "):
            tiny.forward(np.asarray([bad] + right[1:]), pixel_values_videos=pixels)


def test_loader_refuses_a_wrong_tensor_shape(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(_clip().parent / "tiny-llava-onevision", folder)
    raw = json.loads((folder / "config.json").read_text())
    raw["vision_config"]["image_size"] = 64  # 8x8 positions, the file holds 7x7
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="position_embedding.weight"):
        models.load(folder)


def test_transformers_4_52_names_load_the_same(tmp_path, tiny):
    """transformers >= 4.52 writes `model.language_model.`, `model.vision_tower.`, ...,
    `lm_head.weight`; the same tensors under those names load into the same params."""
    from safetensors.numpy import load_file, save_file

    def renamed(name):
        if name.startswith("language_model.model."):
            return "model.language_model." + name[len("language_model.model."):]
        if name.startswith("language_model."):
            return name[len("language_model."):]
        return "model." + name

    folder = tmp_path / "ckpt"
    shutil.copytree(_clip().parent / "tiny-llava-onevision", folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        tensors = load_file(folder / shard)
        save_file({renamed(k): v for k, v in tensors.items()}, folder / shard, metadata={"format": "pt"})
    index["weight_map"] = {renamed(k): v for k, v in index["weight_map"].items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "model.vision_tower.vision_model.embeddings.position_embedding.weight" in index["weight_map"]
    loaded = models.load(folder, dtype=jnp.float32)
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), loaded.params, tiny.params)
    assert all(jax.tree.leaves(same))
