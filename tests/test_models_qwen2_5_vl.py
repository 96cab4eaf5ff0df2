"""Qwen2.5-VL in JAX against transformers 4.51.3, on tiny random checkpoints it writes.

`tests/_qwen_checkpoint.py` builds the checkpoints (sharded `save_pretrained`, tied and
untied LM head) and one prompt with two videos and an image. At float32 with matmul
precision "highest" the vision tower, every LM layer's hidden states and the logits agree
within 1e-4, greedy generation token for token, and pruned prompts (TFS and two baselines)
agree with transformers' LM fed the kept embeddings at the unpruned prompt's positions.
Each check prints its largest difference (`-s` shows them: "MAXDIFF ...").

The checkpoint loader's bad-input matrix runs without torch; the parity tests skip without
torch/transformers and fail if transformers is not 4.51.3 (later releases change the rule
for fractional `second_per_grid_ts`).
"""

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tfs_jax
from tfs_jax import models
from tfs_jax.models import decoder
from tests import _parity
from tests import _qwen_checkpoint as ck

TOL = 1e-4
BF16_TOL = 0.05  # of max |logit|: bfloat16 weights and activations (8 mantissa bits, 2 layers)


_report = _parity.report
_highest_precision = _parity.highest_precision  # autouse


def _torch():
    return _parity.require_torch(ck.TRANSFORMERS_VERSION, "Qwen2.5-VL")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """`{tied: (folder, transformers model)}` for a tied and an untied LM head."""
    _torch()
    out = {}
    for tied in (False, True):
        folder = tmp_path_factory.mktemp(f"qwen_tied_{tied}")
        out[tied] = (folder, ck.write_checkpoint(folder, tied=tied, seed=int(tied)))
    return out


@pytest.fixture(scope="module")
def inputs():
    return ck.prompt_inputs()


def _media(inputs):
    return {k: v for k, v in inputs.items() if k != "input_ids"}


def _hf_forward(model, inputs):
    torch = _torch()
    with torch.no_grad():
        return model(**ck.torch_inputs(inputs), output_hidden_states=True)


# ------------------------------------------------------------------ the loader


def test_load_reads_sharded_checkpoints_tied_and_untied(checkpoints):
    for tied, (folder, hf) in checkpoints.items():
        assert len(list(folder.glob("*.safetensors"))) > 1  # sharded
        model = models.load(folder)
        assert ("lm_head" in model.params) is (not tied)
        assert model.config.tie_word_embeddings is tied
        got = np.asarray(model.params["layers"]["self_attn"]["q_proj"]["kernel"][1])
        want = hf.model.layers[1].self_attn.q_proj.weight.detach().numpy().T
        np.testing.assert_array_equal(got, want)
        assert model.config.vision.fullatt_block_indexes == (2,)


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("tied", [False, True])
def test_vision_tower_equals_transformers(checkpoints, inputs, tied):
    torch = _torch()
    folder, hf = checkpoints[tied]
    model = models.load(folder)
    ti = ck.torch_inputs(inputs)
    for pixels, grid in (("pixel_values_videos", "video_grid_thw"), ("pixel_values", "image_grid_thw")):
        with torch.no_grad():
            want = hf.visual(ti[pixels], grid_thw=ti[grid]).numpy()
        got = np.asarray(model.vision(inputs[pixels], inputs[grid]))
        assert got.shape == want.shape
        assert _report(f"vision {pixels} tied={tied}", np.abs(got - want).max()) < TOL


@pytest.mark.parametrize("tied", [False, True])
def test_hidden_states_and_logits_equal_transformers(checkpoints, inputs, tied):
    folder, hf = checkpoints[tied]
    model = models.load(folder)
    want = _hf_forward(hf, inputs)
    out = model.forward(inputs["input_ids"], **_media(inputs), hidden_states=True)
    layers = model.config.text.num_layers
    assert out.hidden_states.shape[0] == layers + 1 and out.keep is None
    for i in range(layers + 1):  # transformers' last entry is the final norm of the last layer
        got = out.hidden_states[i]
        if i == layers:
            got = decoder.rms_norm(got, model.params["final_norm"]["scale"], eps=model.config.text.rms_eps)
        diff = np.abs(np.asarray(got) - want.hidden_states[i][0].numpy()).max()
        assert _report(f"hidden state {i} tied={tied}", diff) < TOL
    assert _report(f"logits tied={tied}", np.abs(np.asarray(out.logits) - want.logits[0].numpy()).max()) < TOL
    last = model.forward(inputs["input_ids"], **_media(inputs), logits="last")
    np.testing.assert_allclose(last.logits, out.logits[-1], rtol=1e-5, atol=1e-5)


def test_positions_follow_transformers_rope_index(checkpoints, inputs):
    torch = _torch()
    folder, hf = checkpoints[False]
    ti = ck.torch_inputs(inputs)
    with torch.no_grad():
        want, delta = hf.get_rope_index(ti["input_ids"], ti["image_grid_thw"], ti["video_grid_thw"],
                                        torch.tensor(ti["second_per_grid_ts"]), torch.ones_like(ti["input_ids"]))
    out = models.load(folder).forward(inputs["input_ids"], **_media(inputs), logits="last")
    np.testing.assert_array_equal(out.positions, want[:, 0].numpy())
    assert out.rope_delta == int(delta[0, 0])
    # Fractional seconds: video B (1.25 s x 2 tokens/s) steps 0, 2 (2.5 truncated).
    start = int(np.flatnonzero(inputs["input_ids"] == ck.VIDEO)[-1]) - 29
    assert sorted(set(out.positions[0, start:start + 30] - out.positions[0, start])) == [0, 2]


def test_greedy_generation_equals_transformers(checkpoints, inputs):
    """16 greedy tokens equal, and every step's logits (prefill, then the KV-cache decode
    steps fed transformers' tokens) within 1e-4 of transformers' scores."""
    torch = _torch()
    folder, hf = checkpoints[False]
    ti = ck.torch_inputs(inputs)
    hf.generation_config.eos_token_id = None  # 16 tokens, whatever comes
    with torch.no_grad():
        result = hf.generate(**ti, attention_mask=torch.ones_like(ti["input_ids"]), do_sample=False,
                             max_new_tokens=16, output_scores=True, return_dict_in_generate=True)
    want = result.sequences[0, ti["input_ids"].shape[1]:].numpy()
    model = models.load(folder)
    got = model.generate(inputs["input_ids"], **_media(inputs), max_new_tokens=16)
    assert got.tolist() == want.tolist()
    print(f"MAXDIFF generation: {int(np.sum(got != want))} of 16 tokens differ")
    prompt, _ = model.prepare(inputs["input_ids"], **_media(inputs))
    logits, cache, _ = model.prefill(prompt, cache_len=2 * prompt.ids.shape[0])
    diffs = []
    for token, scores in zip(want, result.scores):
        diffs.append(np.abs(np.asarray(logits) - scores[0].numpy()).max())
        logits, cache = model.decode(cache, int(token))
    assert _report("generation step logits (prefill + 15 decode steps)", max(diffs)) < TOL


def test_generation_stops_after_eos(checkpoints, inputs):
    model = models.load(checkpoints[False][0])
    full = model.generate(inputs["input_ids"], **_media(inputs), max_new_tokens=6)
    cut = model.generate(inputs["input_ids"], **_media(inputs), max_new_tokens=6, eos_token_id=int(full[2]))
    first = full.tolist().index(full[2])
    assert cut.tolist() == full[:first + 1].tolist()


def _hf_pruned_logits(hf, inputs, keep):
    """transformers' LM (text model + lm_head) fed the kept embeddings at the unpruned
    prompt's positions indexed by the kept columns."""
    torch = _torch()
    ti = ck.torch_inputs(inputs)
    ids = ti["input_ids"]
    with torch.no_grad():
        embeds = hf.model.embed_tokens(ids)
        embeds[ids == ck.VIDEO] = hf.visual(ti["pixel_values_videos"], grid_thw=ti["video_grid_thw"])
        embeds[ids == ck.IMAGE] = hf.visual(ti["pixel_values"], grid_thw=ti["image_grid_thw"])
        positions, _ = hf.get_rope_index(ids, ti["image_grid_thw"], ti["video_grid_thw"],
                                         torch.tensor(ti["second_per_grid_ts"]), torch.ones_like(ids))
        cols = np.ones(ids.shape[1], bool)
        cols[(ids[0] == ck.VIDEO).numpy()] = keep
        cols = torch.from_numpy(cols)
        hidden = hf.model(inputs_embeds=embeds[:, cols], position_ids=positions[:, :, cols]).last_hidden_state
        return hf.lm_head(hidden)[0].numpy(), positions[:, 0, cols].numpy()


@pytest.mark.parametrize("prune", ["tfs", "uniform", "divprune"])
def test_pruned_logits_equal_transformers_lm_on_kept_embeddings(checkpoints, inputs, prune):
    folder, hf = checkpoints[False]
    model = models.load(folder)
    spec = tfs_jax.TFSConfig(retain_ratio=0.5) if prune == "tfs" else prune
    out = model.forward(inputs["input_ids"], **_media(inputs), prune=spec,
                        retain_ratio=None if prune == "tfs" else 0.5)
    videos = int(np.sum(inputs["input_ids"] == ck.VIDEO))
    assert out.keep.shape == (videos,) and 0 < out.keep.sum() < videos
    want, positions = _hf_pruned_logits(hf, inputs, out.keep)
    np.testing.assert_array_equal(out.positions, positions)
    assert out.logits.shape == want.shape
    assert _report(f"pruned logits {prune}", np.abs(np.asarray(out.logits) - want).max()) < TOL


def test_pruned_generation_starts_from_pruned_prefill(checkpoints, inputs):
    model = models.load(checkpoints[False][0])
    spec = dict(prune="uniform", retain_ratio=0.25)
    out = model.forward(inputs["input_ids"], **_media(inputs), logits="last", **spec)
    ids = model.generate(inputs["input_ids"], **_media(inputs), max_new_tokens=2, **spec)
    assert ids[0] == int(np.argmax(out.logits))


def test_chunked_attention_equals_unchunked(checkpoints, inputs):
    model = models.load(checkpoints[False][0])
    assert inputs["input_ids"].size > 16
    text = dataclasses.replace(model.config.text, chunk_size=16)  # 128 padded slots: 8 chunks
    chunked = models.Model(dataclasses.replace(model.config, text=text), model.params)
    whole = model.forward(inputs["input_ids"], **_media(inputs))
    parts = chunked.forward(inputs["input_ids"], **_media(inputs))
    diff = np.abs(np.asarray(whole.logits) - np.asarray(parts.logits)).max()
    assert _report("chunked vs unchunked attention", diff) < 1e-5


def test_attend_chunks_hand_case():
    """Three queries, chunk 2: the causal softmax rows by hand."""
    q = jnp.ones((3, 1, 1, 2))
    k = jnp.array([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]]])
    v = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    out = decoder.attend(q, k, v, jnp.arange(3), jnp.ones(3, bool), chunk_size=2)[:, 0, 0]
    # query 1: scores (0, 2/sqrt 2) -> weights (1, e^sqrt2) / (1 + e^sqrt2).
    w = np.exp(np.sqrt(2.0))
    np.testing.assert_allclose(out[0], [1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1 / (1 + w), w / (1 + w)], rtol=1e-5)


def test_bfloat16_loads_and_runs(checkpoints, inputs, tmp_path):
    """A bfloat16 checkpoint (as transformers writes it) loads bit for bit, equals a float32
    one cast on load, and its logits stay within BF16_TOL of float32 transformers."""
    import copy

    torch = _torch()
    folder, hf = checkpoints[False]
    copy.deepcopy(hf).to(torch.bfloat16).save_pretrained(tmp_path / "bf16", max_shard_size="300KB")
    model = models.load(tmp_path / "bf16")
    assert model.config.torch_dtype == "bfloat16" and model.params["embed"].dtype == jnp.bfloat16
    want = hf.model.embed_tokens.weight.detach().to(torch.bfloat16).view(torch.int16).numpy()
    np.testing.assert_array_equal(np.asarray(model.params["embed"]).view(np.int16), want)
    cast = models.load(folder, dtype=jnp.bfloat16)
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(cast.params)):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    want = _hf_forward(hf, inputs).logits[0].numpy()
    got = np.asarray(model.forward(inputs["input_ids"], **_media(inputs)).logits)
    assert np.all(np.isfinite(got))
    scale = np.abs(want).max()
    assert _report("bfloat16 logits / max |logit|", np.abs(got - want).max() / scale) < BF16_TOL


def test_bfloat16_shard_rewritten_in_place_reloads_fresh(checkpoints, tmp_path):
    """Offsets of bfloat16 tensors are read per load: a shard rewritten at the same path
    (its header longer, so every offset moves) loads its new contents, not stale bytes."""
    import copy

    from safetensors import safe_open
    from safetensors.torch import save_file

    torch = _torch()
    hf = checkpoints[False][1]
    copy.deepcopy(hf).to(torch.bfloat16).save_pretrained(tmp_path, safe_serialization=True)
    models.load(tmp_path)
    shard = tmp_path / "model.safetensors"
    with safe_open(shard, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"] + 1
    save_file(tensors, shard, metadata={"format": "pt", "note": "x" * 200})
    got = np.asarray(models.load(tmp_path).params["embed"]).view(np.int16)
    np.testing.assert_array_equal(got, tensors["model.embed_tokens.weight"].view(torch.int16).numpy())


# ------------------------------------------------------------------ bad input


def _config_folder(tmp_path, **changes):
    folder = tmp_path / "model"
    folder.mkdir()
    raw = {"model_type": "qwen2_5_vl", **changes}
    (folder / "config.json").write_text(json.dumps(raw))
    return folder


def test_bad_folders_raise_one_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        models.load(tmp_path / "nowhere")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file, not a checkpoint folder"):
        models.load(tmp_path / "file.bin")
    with pytest.raises(ValueError, match="has no config.json"):
        models.load(tmp_path)
    folder = _config_folder(tmp_path, model_type="llava")
    with pytest.raises(ValueError, match=r"model_type='llava'.*supported: qwen2_5_vl") as err:
        models.load(folder)
    assert "\n" not in str(err.value)


def _copy(checkpoint, tmp_path):
    return shutil.copytree(checkpoint, tmp_path / "copy")


def _shard_of(folder, name):
    return folder / json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"][name]


def test_missing_and_truncated_shards(checkpoints, tmp_path):
    folder = _copy(checkpoints[False][0], tmp_path)
    shard = _shard_of(folder, "model.norm.weight")
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=f"shard {shard.name} is truncated"):
        models.load(folder)
    shard.unlink()
    with pytest.raises(ValueError, match=f"shard {shard.name} listed in .* is missing"):
        models.load(folder)


def _rewrite(shard, edit):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(shard)
    edit(tensors)
    save_file(tensors, shard, metadata={"format": "pt"})


def test_wrong_missing_and_extra_tensors_are_named(checkpoints, tmp_path):
    folder = _copy(checkpoints[False][0], tmp_path)
    shard = _shard_of(folder, "model.norm.weight")
    _rewrite(shard, lambda t: t.update({"model.norm.weight": t["model.norm.weight"][:-1]}))
    with pytest.raises(ValueError, match=r"'model.norm.weight' .* shape \(63,\), expected \(64,\)"):
        models.load(folder)
    _rewrite(shard, lambda t: t.pop("model.norm.weight"))
    with pytest.raises(ValueError, match="lacks 1 tensor.*'model.norm.weight'"):
        models.load(folder)
    _rewrite(shard, lambda t: t.update({"model.norm.weight": np.ones(64, np.float32),
                                        "model.extra.weight": np.ones(2, np.float32)}))
    with pytest.raises(ValueError, match="unexpected tensor.*'model.extra.weight'"):
        models.load(folder)
    _rewrite(shard, lambda t: t.pop("model.extra.weight"))
    _rewrite(shard, lambda t: t.update({"model.norm.weight": np.ones(64, np.float16)}))
    with pytest.raises(ValueError, match=r"'model.norm.weight' .* dtype F16, expected F32"):
        models.load(folder)


def test_placeholders_that_do_not_match_the_grids(checkpoints, inputs):
    model = models.load(checkpoints[False][0])
    ids = inputs["input_ids"]
    short = np.delete(ids, np.flatnonzero(ids == ck.VIDEO)[0])
    with pytest.raises(ValueError, match=r"74 video placeholders .* needs 75"):
        model.forward(short, **_media(inputs))
    with pytest.raises(ValueError, match="6 image placeholders .* needs 0"):
        model.forward(ids, **{k: v for k, v in _media(inputs).items() if "image" not in k and k != "pixel_values"})
    with pytest.raises(ValueError, match="needs a retain_ratio"):
        model.forward(ids, **_media(inputs), prune="uniform")


def test_token_ids_outside_the_vocabulary_raise(checkpoints, inputs):
    """An out-of-range or negative id would clamp or wrap in the embedding gather."""
    model = models.load(checkpoints[False][0])
    vocab = model.config.text.vocab_size
    for bad in (vocab, -1):
        ids = np.asarray(inputs["input_ids"]).copy()
        ids[0] = bad
        with pytest.raises(ValueError, match=rf"input_ids holds 1 ids outside \[0, {vocab}\)"):
            model.forward(ids, **_media(inputs))
    prompt, _ = model.prepare(inputs["input_ids"], **_media(inputs))
    _, cache, _ = model.prefill(prompt, cache_len=prompt.ids.shape[0])
    for bad in (vocab, -1):
        with pytest.raises(ValueError, match=rf"token holds 1 ids outside \[0, {vocab}\)"):
            model.decode(cache, bad)


def test_decode_past_the_cache_raises(checkpoints, inputs):
    """A full cache would be overwritten at its last slot (dynamic_update_slice clamps)."""
    model = models.load(checkpoints[False][0])
    prompt, _ = model.prepare(inputs["input_ids"], **_media(inputs))
    logits, cache, _ = model.prefill(prompt, cache_len=prompt.ids.shape[0])
    full = dataclasses.replace(cache, index=jnp.asarray(cache.keys.shape[1] - 1, jnp.int32))
    _, after = model.decode(full, 1)  # the last slot is still free
    with pytest.raises(ValueError, match=rf"KV cache is full \({cache.keys.shape[1]} slots\)"):
        model.decode(after, 1)


# ------------------------------------------------------------------ static shapes


def test_one_program_per_grid_and_per_bucket(checkpoints, inputs):
    """A second video of the same grid reuses the vision program; prompts of different
    lengths (pruned to different counts) in one bucket reuse the prefill program."""
    from tfs_jax.models.qwen2_5_vl import model as model_module
    from tfs_jax.models.qwen2_5_vl import vision

    model = models.load(checkpoints[False][0])
    media = _media(inputs)
    model.vision(media["pixel_values_videos"], media["video_grid_thw"])
    before = vision._tower._cache_size()
    model.vision(media["pixel_values_videos"] + 1.0, media["video_grid_thw"])
    assert vision._tower._cache_size() == before
    model.forward(inputs["input_ids"], **media, prune="uniform", retain_ratio=0.5, logits="last")
    before = model_module._prefill._cache_size()
    out = model.forward(inputs["input_ids"], **media, prune="uniform", retain_ratio=0.25, logits="last")
    assert model_module._prefill._cache_size() == before and out.positions.shape[1] < 128


def test_qwen3_qk_norm_by_hand():
    """Qwen3's q/k RMSNorm: each head's query and key normed over its own channels, times
    the scale, before RoPE (at position 0 RoPE is the identity); values untouched. Without
    `qk_norm` the same weights give the raw projections (the flag has power)."""
    base = dict(vocab_size=8, hidden_size=4, num_layers=1, num_heads=2, num_kv_heads=1,
                intermediate_size=8, qkv_bias=False, head_size=2)
    x = jnp.asarray([[1.0, 2.0, 3.0, 4.0]])
    eye = jnp.eye(4)
    p = {"q_proj": {"kernel": eye}, "k_proj": {"kernel": eye[:, :2]}, "v_proj": {"kernel": eye[:, 2:]},
         "q_norm": {"scale": jnp.asarray([1.0, 2.0])}, "k_norm": {"scale": jnp.asarray([3.0, 1.0])}}
    cos, sin = jnp.ones((1, 2)), jnp.zeros((1, 2))
    q, k, v = decoder.project_qkv(p, x, cos, sin, config=decoder.DecoderConfig(**base, qk_norm=True))
    # head 0 = (1, 2): rms = sqrt(2.5); head 1 = (3, 4): rms = sqrt(12.5)
    want_q = np.array([[1 / 2.5 ** 0.5, 2 * 2 / 2.5 ** 0.5], [3 / 12.5 ** 0.5, 2 * 4 / 12.5 ** 0.5]])
    np.testing.assert_allclose(q[0, 0], want_q, rtol=1e-5)
    np.testing.assert_allclose(k[0, 0], [3 / 2.5 ** 0.5, 2 / 2.5 ** 0.5], rtol=1e-5)
    np.testing.assert_allclose(v[0, 0], [3.0, 4.0])
    q, _, _ = decoder.project_qkv(p, x, cos, sin, config=decoder.DecoderConfig(**base))
    np.testing.assert_allclose(q[0, 0], [[1.0, 2.0], [3.0, 4.0]])
    shapes = decoder.layer_shapes(decoder.DecoderConfig(**base, qk_norm=True))["self_attn"]
    assert shapes["q_norm"]["scale"].shape == (2,) and shapes["q_proj"]["kernel"].shape == (4, 4)


def test_import_models_stays_light():
    """`tfs_jax.models` is an attribute of `tfs_jax`; importing it loads no flax, torch,
    transformers or safetensors (the loader imports safetensors when it reads a shard)."""
    import subprocess
    import sys

    code = ("import sys, tfs_jax\nm = tfs_jax.models\nassert callable(m.load)\n"
            "heavy = [k for k in ('flax', 'torch', 'transformers', 'safetensors') if k in sys.modules]\n"
            "assert not heavy, heavy\nassert {'qwen2_5_vl', 'llava_onevision'} <= set(m.SUPPORTED_MODEL_TYPES)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------ windows by hand


def test_windows_frames_and_patch_order_by_hand():
    """A 6 x 10 patch frame (merged 3 x 5), window 56 px = 2 x 2 merged tokens: six windows,
    the ones at the right (one merged column) and bottom (one merged row) partial."""
    from tfs_jax.models.qwen2_5_vl import config as qconfig
    from tfs_jax.models.qwen2_5_vl import vision

    cfg = qconfig.Qwen25VLConfig.from_dict({**ck.TEXT, "vision_config": ck.VISION}).vision
    assert cfg.window_tokens == 2
    windows = vision.window_segments(((1, 6, 10),), cfg)
    # merged rows {0, 1}, {2} x columns {0, 1}, {2, 3}, {4}; 4 patches per merged token.
    assert sorted(windows.valid.sum(axis=1).tolist()) == sorted([16, 16, 8, 8, 8, 4])
    frames = vision.frame_segments(((3, 6, 10), (1, 4, 6)), cfg)
    assert frames.valid.sum(axis=1).tolist() == [60, 60, 60, 24]  # no attention across frames
    # Every patch sits exactly once, and `inverse` finds it.
    for seg in (windows, frames):
        flat = seg.index.reshape(-1)
        np.testing.assert_array_equal(flat[seg.inverse], np.arange(seg.inverse.size))
    # The processor's order: merged token by merged token, 2 x 2 patches inside each.
    coords = vision.patch_coords(((1, 4, 4),), 2)
    assert coords[:8, 2:4].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [0, 2], [0, 3], [1, 2], [1, 3]]
    # The first window of the 6 x 10 frame holds merged tokens (0,0), (0,1), (1,0), (1,1):
    # patches 0-7 and 20-27 (a merged row of 5 tokens is 20 patches).
    first = windows.index[windows.valid.sum(axis=1) == 16][0]
    assert sorted(first.tolist()) == list(range(8)) + list(range(20, 28))


def test_kept_positions_by_hand():
    """lm.kept_positions, the one rule of LLaVA-OneVision's and InternVL's 1-D positions."""
    from tfs_jax.models.lm import kept_positions

    is_placeholder = np.array([False, True, True, True, False])
    slots, pos, delta = kept_positions(is_placeholder, [True, False, True], "renumber")
    assert slots.tolist() == [0, 1, 3, 4] and pos.tolist() == [0, 1, 2, 3] and delta == 0
    slots, pos, delta = kept_positions(is_placeholder, [True, False, True], "original")
    assert slots.tolist() == [0, 1, 3, 4] and pos.tolist() == [0, 1, 3, 4] and delta == 1
    _, pos, delta = kept_positions(is_placeholder, None, "original")
    assert pos.tolist() == [0, 1, 2, 3, 4] and delta == 0
    _, pos, delta = kept_positions(np.array([False, True, True]), [True, False], "original")
    assert pos.tolist() == [0, 1] and delta == 0  # the next token follows the last kept one
