"""InternVL3/3.5 in JAX against transformers 4.52.4, on tiny random checkpoints it writes.

The reference runs in its own interpreter (transformers 4.52.4 beside torch 2.13.0: the main
environment pins 4.51.3 for Qwen2.5-VL's rope rule), found at `$TFS_JAX_REF452_PYTHON` or
`.venv-ref452/bin/python` (`.ci/run` creates it; pyproject's `internvl-ref` extra says why
each pin). `tests/_internvl_reference.py` writes two checkpoints (`save_pretrained`, sharded):
"ln" (LayerNorm tower, q/k/v biases, feature layer -2, tied head) and "rms" (RMSNorm tower,
q/k norm, a closing LayerNorm, feature layer -1, untied head), both with a Qwen3 LM whose
head_dim is not hidden / heads, three frames and text on both sides of the video.

At float32 and matmul precision "highest": the vision features, every LM layer's hidden
states and the logits within 1e-4; 16 greedy tokens equal and each step's scores within
1e-4; pruned logits (TFS and a baseline, positions renumbered and original) within 1e-4 of
transformers' LM fed the kept rows of its own prompt embeddings at those positions; bfloat16
weights within `BF16_TOL`. Each check prints its largest difference ("MAXDIFF ...", `-s`).

Without the reference interpreter the parity tests skip locally and FAIL under `CI=true`,
naming what is missing. The hand-computed checks need no torch.
"""

import os
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _needs import missing, needs, needs_clips  # noqa: E402  (tests/_needs.py: the one skip rule)

import tfs_jax
from tfs_jax import models
from tfs_jax.models.internvl import vision
from tests import _internvl_reference as ref

TOL = 1e-4
BF16_TOL = 0.05  # of max |logit|: bfloat16 weights and activations (8 mantissa bits)
ROOT = Path(__file__).resolve().parent.parent
REF_PYTHON = Path(os.environ.get("TFS_JAX_REF452_PYTHON", ROOT / ".venv-ref452" / "bin" / "python"))
CASES = {"tfs": (tfs_jax.TFSConfig(retain_ratio=0.5), None), "uniform": ("uniform", 0.25)}


def _report(name: str, value: float) -> float:
    print(f"MAXDIFF {name}: {value:.3g}")
    return value


def _need_reference() -> None:
    """Skip locally, fail under CI=true, when the 4.52.4 interpreter is missing."""
    problem = None
    if not REF_PYTHON.exists():
        problem = (f"the InternVL reference interpreter {REF_PYTHON} is missing (create .venv-ref452 as "
                   ".ci/run does, or set TFS_JAX_REF452_PYTHON)")
    else:
        probe = subprocess.run([str(REF_PYTHON), "-c", "import torch, transformers; print(transformers.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode or probe.stdout.strip() != ref.TRANSFORMERS_VERSION:
            problem = (f"{REF_PYTHON} must import torch and transformers=={ref.TRANSFORMERS_VERSION}: "
                       f"{(probe.stdout + probe.stderr).strip()[-300:]}")
    if problem:
        missing(problem, why="the InternVL reference (.ci/run makes it)")


def _run(command: str, folder: Path) -> None:
    done = subprocess.run([str(REF_PYTHON), str(ROOT / "tests" / "_internvl_reference.py"), command, str(folder)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(autouse=True)
def _highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The checkpoints and transformers' unpruned outputs, and the JAX models loaded."""
    _need_reference()
    folder = tmp_path_factory.mktemp("internvl")
    _run("build", folder)
    with jax.default_matmul_precision("highest"):
        loaded = {name: models.load(folder / name) for name in ref.CONFIGS}
    return folder, loaded, {name: dict(np.load(folder / f"{name}.npz")) for name in ref.CONFIGS}


@pytest.fixture(scope="module")
def pruned(built):
    """JAX pruned forwards, and transformers' LM fed the same kept rows at the same positions."""
    folder, loaded, refs = built
    ours, request = {}, {}
    with jax.default_matmul_precision("highest"):
        for name, model in loaded.items():
            r = refs[name]
            for case, (prune, ratio) in CASES.items():
                for mode in ("renumber", "original"):
                    out = model.forward(r["input_ids"], pixel_values_videos=r["pixel_values"], prune=prune,
                                        retain_ratio=ratio, positions=mode)
                    slots = np.arange(len(r["input_ids"]))
                    drop = np.flatnonzero(r["input_ids"] == ref.IMAGE)[~out.keep]
                    key = f"{name}/{case}-{mode}"
                    request[f"{key}/slots"] = np.delete(slots, drop)
                    request[f"{key}/positions"] = out.positions[0].astype(np.int64)
                    ours[key] = out
    np.savez(folder / "lm_request.npz", **request)
    _run("lm", folder)
    return ours, request, dict(np.load(folder / "lm_reply.npz"))


@pytest.mark.parametrize("name", list(ref.CONFIGS))
def test_vision_hidden_states_and_logits(built, name):
    _, loaded, refs = built
    r, model = refs[name], loaded[name]
    features = model.vision(r["pixel_values"])
    assert _report(f"{name} vision", np.abs(np.asarray(features) - r["features"]).max()) < TOL
    out = model.forward(r["input_ids"], pixel_values_videos=r["pixel_values"], hidden_states=True)
    layers = model.config.text.num_layers
    # transformers' last hidden state is normed; ours is the raw last layer (the logits cover it)
    hidden = np.abs(np.asarray(out.hidden_states)[:layers] - r["hidden"][:layers]).max()
    assert _report(f"{name} hidden states", hidden) < TOL
    assert _report(f"{name} logits", np.abs(np.asarray(out.logits) - r["logits"]).max()) < TOL
    np.testing.assert_array_equal(out.positions, np.tile(np.arange(len(r["input_ids"])), (3, 1)))


@pytest.mark.parametrize("name", list(ref.CONFIGS))
def test_greedy_generation_and_scores(built, name):
    _, loaded, refs = built
    r, model = refs[name], loaded[name]
    tokens = model.generate(r["input_ids"], pixel_values_videos=r["pixel_values"], max_new_tokens=ref.MAX_NEW)
    np.testing.assert_array_equal(tokens, r["tokens"])
    prompt, _ = model.prepare(r["input_ids"], pixel_values_videos=r["pixel_values"])
    logits, cache, _ = model.prefill(prompt, cache_len=256)
    worst = 0.0
    for step, token in enumerate(r["tokens"]):
        worst = max(worst, float(np.abs(np.asarray(logits) - r["scores"][step]).max()))
        logits, cache = model.decode(cache, int(token))
    assert _report(f"{name} greedy scores", worst) < TOL


@pytest.mark.parametrize("name", list(ref.CONFIGS))
def test_pruned_logits_equal_the_lm_fed_kept_embeddings(pruned, name):
    ours, request, reply = pruned
    for case in CASES:
        for mode in ("renumber", "original"):
            key = f"{name}/{case}-{mode}"
            out = ours[key]
            n = len(request[f"{key}/slots"])
            assert out.logits.shape[0] == n and out.keep.sum() < out.keep.size
            if mode == "renumber":
                np.testing.assert_array_equal(request[f"{key}/positions"], np.arange(n))
            else:
                assert request[f"{key}/positions"][-1] == len(ref.prompt_ids()) - 1
                assert out.rope_delta == len(ref.prompt_ids()) - n
            diff = np.abs(np.asarray(out.logits) - reply[key]).max()
            assert _report(f"{name} pruned {case} {mode}", diff) < TOL


def test_pruning_keeps_frame_text_and_shrinks_every_frame(pruned):
    ours, request, _ = pruned
    ids = ref.prompt_ids()
    kept = ids[request["ln/tfs-renumber/slots"]]
    for value in (ref.IMG_START, ref.IMG_END, ref.NEWLINE, 60, 61, 62, 70, 74):
        assert np.sum(kept == value) == np.sum(ids == value)
    per_frame = ours["ln/tfs-renumber"].keep.reshape(ref.FRAMES, -1).sum(axis=1)
    assert 0 < per_frame.sum() <= ref.FRAMES * ref.TOKENS_PER_FRAME // 2  # TFS may leave budget unspent
    # each frame's block between its <img> and </img> holds exactly that frame's kept tokens
    starts, ends = np.flatnonzero(kept == ref.IMG_START), np.flatnonzero(kept == ref.IMG_END)
    np.testing.assert_array_equal(ends - starts - 1, per_frame)
    assert np.all(kept[np.concatenate([np.arange(a + 1, b) for a, b in zip(starts, ends)])] == ref.IMAGE)


def test_bfloat16_runs_within_tolerance(built):
    folder, _, refs = built
    r = refs["rms"]
    model = models.load(folder / "rms", dtype=jnp.bfloat16)
    out = model.forward(r["input_ids"], pixel_values_videos=r["pixel_values"], logits="last")
    scale = np.abs(r["logits"][-1]).max()
    diff = np.abs(np.asarray(out.logits, np.float32) - r["logits"][-1]).max() / scale
    assert np.isfinite(diff) and _report("rms bfloat16 logits (relative)", diff) < BF16_TOL


def _hub_name(name: str) -> str:
    """A `save_pretrained` (legacy) tensor name in the hub's converted layout."""
    for old, new in (("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                     ("vision_tower.", "model.vision_tower."), ("multi_modal_projector.", "model.multi_modal_projector.")):
        if name.startswith(old):
            return new + name[len(old):]
    return name


@pytest.mark.parametrize("name", list(ref.CONFIGS))
def test_hub_layout_names_load_the_same(built, tmp_path, name):
    """The hub's names (`model.language_model.`, `model.vision_tower.`, `lm_head.`) load into
    the same params; a tied checkpoint that stores its head anyway loads too."""
    import shutil

    from safetensors.numpy import load_file, save_file

    folder, loaded, _ = built
    tensors = {}
    for shard in sorted((folder / name).glob("*.safetensors")):
        tensors |= {_hub_name(k): v for k, v in load_file(shard).items()}
    if "lm_head.weight" not in tensors:
        tensors["lm_head.weight"] = tensors["model.language_model.embed_tokens.weight"]
    assert any(k.startswith("model.vision_tower.") for k in tensors)
    shutil.copy(folder / name / "config.json", tmp_path / "config.json")
    save_file(tensors, tmp_path / "model.safetensors")
    again = models.load(tmp_path)
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), again.params, loaded[name].params)
    assert all(jax.tree.leaves(same)) and jax.tree.structure(same) == jax.tree.structure(loaded[name].params)


def test_processor_equals_gotocr2_on_bundled_clips(tmp_path):
    """`preprocess_frames` against `GotOcr2ImageProcessor` (448 px, crop_to_patches=False,
    ImageNet mean/std) per frame, on two frames of each bundled clip: exactly equal."""
    from tfs_jax.models.internvl import preprocess_frames

    needs("av")
    clips = needs_clips()
    _need_reference()
    frames = {}
    for name, path in sorted(clips.items()):  # native size (aspect not square): the first and last frame
        with __import__("av").open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        frames[name] = np.stack([decoded[0], decoded[-1]])
    np.savez(tmp_path / "frames.npz", **frames)
    _run("process", tmp_path)
    want = np.load(tmp_path / "processed.npz")
    for name, clip in frames.items():
        got = preprocess_frames(clip)
        assert got.shape == (2, 3, 448, 448)
        assert _report(f"processor {name}", np.abs(got - want[name]).max()) == 0.0


def test_prompt_text_equals_internvl_processor(tmp_path):
    """The tiny checkpoint's chat template rendered by `models.chat` and its `<video>` expanded
    by `internvl.ask.expand_video` equal `apply_chat_template` and `InternVLProcessor`'s
    expansion (`Frame{i}: <img>...</img>` joined by newlines), text and ids."""
    import json

    from tfs_jax.models import chat as chat_module
    from tfs_jax.models.internvl.ask import expand_video

    _need_reference()
    model_dir = ROOT / "tests" / "data" / "tiny-internvl"
    question, frames = "What is moving in this video?", 3
    (tmp_path / "text.json").write_text(json.dumps({"model": str(model_dir), "question": question, "frames": frames}))
    _run("text", tmp_path)
    want = json.loads((tmp_path / "text_out.json").read_text())
    chat = chat_module.Chat.from_dir(model_dir)
    rendered = chat.render(chat_module.video_question(question))
    assert rendered == want["rendered"]
    config = models.load(model_dir).config
    expanded = expand_video(rendered, frames, config.tokens_per_tile)
    assert expanded == want["expanded"] and "Frame3: <img>" in expanded
    np.testing.assert_array_equal(chat.encode(expanded), want["ids"])
    assert int(np.sum(chat.encode(expanded) == config.image_token_id)) == frames * config.tokens_per_tile


# ------------------------------------------------------------------ by hand, no torch


def test_pixel_shuffle_by_hand():
    """A 4 x 4 grid of 1-channel values 0..15 becomes 2 x 2 tokens of 4 channels, each
    `[x[2i,2j], x[2i,2j+1], x[2i+1,2j], x[2i+1,2j+1]]`."""
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    out = np.asarray(vision.pixel_shuffle(x))
    np.testing.assert_array_equal(out[0, 0, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(out[0, 0, 1], [2, 3, 6, 7])
    np.testing.assert_array_equal(out[0, 1, 0], [8, 9, 12, 13])


def test_layer_norm_by_hand():
    p = {"scale": jnp.asarray([1.0, 2.0]), "bias": jnp.asarray([0.5, 0.0])}
    out = vision.layer_norm(jnp.asarray([1.0, 3.0]), p, eps=0.0)  # mean 2, var 1: (-1, 1)
    np.testing.assert_allclose(out, [-0.5, 2.0])


def _tiny_raw() -> dict:
    text = dict(ref.TEXT, tie_word_embeddings=True)
    vision_cfg = dict(ref.VISION, **ref.CONFIGS["ln"]["vision"])
    return dict(model_type="internvl", text_config=text, vision_config=vision_cfg, image_token_id=ref.IMAGE,
                vision_feature_layer=-2)


def test_config_and_request_errors():
    from tfs_jax.models.internvl import InternVLConfig, Model
    from tfs_jax.models.internvl.model import _check_request

    assert "internvl" in models.SUPPORTED_MODEL_TYPES
    config = InternVLConfig.from_dict(_tiny_raw())
    assert config.text.qk_norm and config.text.head_dim == 16 and config.feature_depth == 2
    assert config.tokens_per_tile == ref.TOKENS_PER_FRAME
    for change, match in ((dict(downsample_ratio=0.25), "downsample_ratio"),
                          (dict(vision_feature_layer=9), "vision_feature_layer"),
                          (dict(text_config=dict(ref.TEXT, rope_scaling={"type": "yarn"})), "rope_scaling")):
        with pytest.raises(ValueError, match=match):
            InternVLConfig.from_dict({**_tiny_raw(), **change})
    ids = ref.prompt_ids()
    pixels = np.zeros((ref.FRAMES, 3, ref.IMAGE_SIZE, ref.IMAGE_SIZE), np.float32)
    assert _check_request(config, ids, pixels, None) == (ref.FRAMES,)
    with pytest.raises(ValueError, match="placeholders"):
        _check_request(config, ids[:-20], pixels, None)
    with pytest.raises(ValueError, match="frames_per_video"):
        _check_request(config, ids, pixels, [1, 1])
    text_only = ids[ids != config.image_token_id]
    assert _check_request(config, text_only, None, None) == ()
    with pytest.raises(ValueError, match=r"frames_per_video=\[2\] given without pixel_values_videos"):
        _check_request(config, text_only, None, [2])
    with pytest.raises(ValueError, match="video placeholders .* but no pixel_values_videos"):
        _check_request(config, ids, None, None)
    for bad in (config.text.vocab_size, -1):  # a gather out of range clamps or wraps
        with pytest.raises(ValueError, match=r"input_ids holds 1 ids outside \[0, "):
            _check_request(config, np.concatenate([[bad], ids[1:]]), pixels, None)
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        _check_request(config, ids, pixels[:, :, :56], None)
    with pytest.raises(ValueError, match="positions="):
        Model(config, {}).prepare(ids, pixel_values_videos=pixels, positions="gaps")



@pytest.mark.parametrize("settings, match", [
    ({"do_normalize": False}, "only a bicubic resize"),
    ({"do_rescale": False}, "only a bicubic resize"),
    ({"do_resize": False}, "only a bicubic resize"),
    ({"resample": 2}, "only a bicubic resize"),
    ([448], "only a bicubic resize"),
    ({"size": 448}, "size=448 must be an object"),
    ({"size": {"height": 448, "width": 224}}, "must be square"),
])
def test_processor_settings_it_cannot_reproduce_are_refused(tmp_path, settings, match):
    """Pixels that would differ from transformers' raise instead of passing silently."""
    import json

    from tfs_jax.models.internvl.processor import ProcessorConfig

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=match):
        ProcessorConfig.from_dir(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 224, "width": 224}}))
    assert ProcessorConfig.from_dir(tmp_path).size == 224
