"""End-to-end tests of `tfs-jax ask` (tfs_jax/ask.py) on the shipped tiny checkpoint
(tests/data/tiny-qwen2.5-vl) and clip (tests/data/tiny_clip.mp4): the unpruned answer is
transformers 4.51.3's greedy decode of the same inputs (committed by
tests/data/make_fixtures.py, so no transformers needed), the summary line, the pruned
count, and the bad-input matrix (one line, exit 2, nothing written)."""

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

from tfs_jax import ask

needs("av")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CHECKPOINT = DATA / "tiny-qwen2.5-vl"
CLIP = DATA / "tiny_clip.mp4"
FIXTURE = DATA / "qwen2_5_vl_4.51.3.npz"
QUESTION = "What is moving in this video?"
SUMMARY = re.compile(r"kept (\d+) of (\d+) video tokens \([^)]*\); seconds: vision ([\d.]+), "
                     r"prune ([\d.]+), prefill ([\d.]+), decode ([\d.]+) \(compilation included\)")


def _parse(argv):
    parser = argparse.ArgumentParser()
    ask.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["ask", *argv])


def _run(capsys, *extra):
    args = _parse(["--model", str(CHECKPOINT), str(CLIP), QUESTION, "--max-new-tokens", "8",
                   "--dtype", "float32", *extra])
    assert ask.run(args) == 0
    text, summary = capsys.readouterr().out[:-1].rsplit("\n", 1)  # the answer may hold \x1e
    return text, SUMMARY.fullmatch(summary)


def test_unpruned_answer_is_transformers_greedy_decode(capsys):
    fixture = np.load(FIXTURE)
    answer = ask.ask(CHECKPOINT, CLIP, QUESTION, max_new_tokens=8, dtype="float32",
                     progress=False)
    np.testing.assert_array_equal(answer.token_ids, fixture["generated"])
    from tfs_jax.models.chat import Chat

    assert answer.text == Chat.from_dir(CHECKPOINT).decode(fixture["generated"])
    assert answer.kept == answer.total == 36          # grid (3, 6, 8) / 4
    text, summary = _run(capsys)
    assert text == answer.text
    assert summary is not None and summary[1] == summary[2] == "36"
    assert list(answer.seconds) == ["vision", "prune", "prefill", "decode"]
    assert all(answer.seconds[k] > 0 for k in ("vision", "prefill", "decode"))


@pytest.mark.parametrize("method", [None, "uniform", "divprune"])
def test_pruned_count_and_answer(capsys, method):
    from tfs_jax import models
    from tfs_jax.config import TFSConfig
    import jax.numpy as jnp

    extra = ["--ratio", "0.5"] + ([] if method is None else ["--method", method])
    text, summary = _run(capsys, *extra)
    fixture = np.load(FIXTURE)
    model = models.load(CHECKPOINT, dtype=jnp.float32)
    prune = TFSConfig(retain_ratio=0.5) if method is None else method
    inputs = dict(pixel_values_videos=_pixels(fixture), video_grid_thw=fixture["video_grid_thw"],
                  second_per_grid_ts=fixture["second_per_grid_ts"])
    out = model.forward(fixture["input_ids"], prune=prune,
                        retain_ratio=None if method is None else 0.5, logits="last", **inputs)
    kept = int(out.keep.sum())
    assert summary is not None and int(summary[1]) == kept and int(summary[2]) == 36
    assert 0 < kept < 36
    ids = model.generate(fixture["input_ids"], prune=prune, max_new_tokens=8,
                         retain_ratio=None if method is None else 0.5,
                         eos_token_id=sorted(ask._eos(CHECKPOINT)), **inputs)
    from tfs_jax.models.chat import Chat

    assert text == Chat.from_dir(CHECKPOINT).decode(ids)


def _pixels(fixture):
    from tfs_jax.models.qwen2_5_vl.processor import preprocess_video

    return preprocess_video(fixture["frames"], fps=float(fixture["fps"]),
                            max_pixels=12544).pixel_values_videos


# ---- bad input: one line, exit 2, nothing written ------------------------------------------

def _copy(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, folder)
    return folder


def _tiny_video(path, size):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(8):
            frame = np.full((size, size, 3), 30 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _wrong_shape(folder):
    from safetensors.numpy import load_file, save_file

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name = next(n for n in index["weight_map"] if n.endswith("mlp.gate_proj.weight"))
    shard = folder / index["weight_map"][name]
    tensors = load_file(shard)
    tensors[name] = np.zeros((3, 5), tensors[name].dtype)
    save_file(tensors, shard, metadata={"format": "pt"})
    return name


def _truncate(folder):
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:5000])


def _no_placeholder_template(folder):
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% for c in m['content'] %}{{ c.get('text', '') }}{% endfor %}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n")


CASES = [
    # (name, how to break a copy of the checkpoint -> (model, video, extra), message)
    ("no config.json", lambda d, t: ((d / "config.json").unlink(), (d, CLIP, []))[1],
     "no config.json"),
    ("unknown model_type", lambda d, t: (
        (d / "config.json").write_text((d / "config.json").read_text().replace(
            '"model_type": "qwen2_5_vl"', '"model_type": "llava"')), (d, CLIP, []))[1],
     "llava"),
    ("missing shard", lambda d, t: ((d / "model-00002-of-00002.safetensors").unlink(),
                                    (d, CLIP, []))[1], "missing"),
    ("truncated shard", lambda d, t: (_truncate(d), (d, CLIP, []))[1], "truncated"),
    ("wrong shape", lambda d, t: (_wrong_shape(d), (d, CLIP, []))[1], "gate_proj.weight"),
    ("frames under 28 px", lambda d, t: (d, _tiny_video(t / "small.mp4", 20), []),
     "20x20 pixels"),
    ("placeholders not matching", lambda d, t: (_no_placeholder_template(d), (d, CLIP, []))[1],
     "0 <|video_pad|> placeholders but 1 grids"),
    ("model is a file", lambda d, t: (d / "config.json", CLIP, []), "is a file"),
    ("method without ratio", lambda d, t: (d, CLIP, ["--method", "evs"]), "needs --ratio"),
    ("ratio out of range", lambda d, t: (d, CLIP, ["--ratio", "1.5"]), "(0, 1]"),
    ("missing video", lambda d, t: (d, t / "none.mp4", []), "No such file"),
]


def _listing(*folders):
    return sorted((str(p), p.stat().st_size) for f in folders for p in f.rglob("*"))


@pytest.mark.parametrize("name, breaks, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(tmp_path, capsys, name, breaks, message):
    folder = _copy(tmp_path)
    model, video, extra = breaks(folder, tmp_path)
    before = _listing(tmp_path)
    status = ask.main(["--model", str(model), str(video), QUESTION, *extra])
    err = capsys.readouterr()
    assert status == 2 and err.out == ""
    lines = [line for line in err.err.splitlines() if line.startswith("tfs-jax: error:")]
    assert len(lines) == 1 and message.lower() in lines[0].lower(), err.err
    assert "Traceback" not in err.err
    assert _listing(tmp_path) == before                  # nothing written


@pytest.mark.parametrize("breaks", ["video", "tokenizer", "config"])
def test_cheap_checks_come_before_the_weights_are_read(tmp_path, monkeypatch, breaks):
    """A bad video, tokenizer or config.json raises before `models.load` is ever called."""
    from tfs_jax import models

    folder = _copy(tmp_path)
    video = tmp_path / "none.mp4" if breaks == "video" else CLIP
    if breaks == "tokenizer":
        (folder / "tokenizer.json").unlink()
    if breaks == "config":
        (folder / "config.json").write_text("{not json")
    calls = []
    monkeypatch.setattr(models, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError):
        ask.ask(folder, video, QUESTION, progress=False)
    assert calls == []


def test_help_names_every_family():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    ask.add_parser(sub)
    help_line = next(a.help for a in sub._choices_actions if a.dest == "ask")
    assert all(kind in help_line for kind in ask.FAMILIES), help_line


def test_command_line_exit_status(tmp_path):
    """Through a real process: one stderr line, status 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tfs_jax.ask", "--model", str(tmp_path),
                           str(CLIP), QUESTION], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "no config.json" in proc.stderr


# ---- LLaVA-OneVision (tests/data/tiny-llava-onevision, make_llava_fixtures.py) ------------

LLAVA = DATA / "tiny-llava-onevision"
LLAVA_FIXTURE = DATA / "llava_onevision_4.51.3.npz"


def test_llava_prompt_is_transformers_processor_and_template():
    """The rendered template and the expanded `<video>` (32 frames x 4 x 4 + the newline)
    equal what transformers' `apply_chat_template` and `LlavaOnevisionProcessor` gave."""
    from tfs_jax.models.chat import Chat
    from tfs_jax.models.llava_onevision import ask as llava_ask

    fixture = np.load(LLAVA_FIXTURE)
    chat = Chat.from_dir(LLAVA)
    assert chat.render([{"role": "user", "content": [{"type": "video"},
                                                     {"type": "text", "text": QUESTION}]}]) == str(fixture["text"])
    req = llava_ask.request(LLAVA, CLIP, QUESTION, chat, progress=False)
    np.testing.assert_array_equal(req.input_ids, fixture["input_ids"])
    assert req.total == 32 * 16 and req.media.shape == (1, 32, 3, 60, 60)
    import jax
    import jax.numpy as jnp

    from tfs_jax import models

    with jax.default_matmul_precision("highest"):
        out = models.load(LLAVA, dtype=jnp.float32).forward(req.input_ids, pixel_values_videos=req.media)
    rows = fixture["logits"].shape[0]  # the text after the video: it saw every frame
    np.testing.assert_allclose(np.asarray(out.logits[-rows:]), fixture["logits"], atol=1e-4)


def test_llava_unpruned_answer_is_transformers_greedy_decode(capsys):
    fixture = np.load(LLAVA_FIXTURE)
    answer = ask.ask(LLAVA, CLIP, QUESTION, max_new_tokens=8, dtype="float32", progress=False)
    np.testing.assert_array_equal(answer.token_ids, fixture["generated"])
    assert answer.kept == answer.total == 512
    args = _parse(["--model", str(LLAVA), str(CLIP), QUESTION, "--max-new-tokens", "8",
                   "--ratio", "0.5", "--method", "uniform"])
    assert ask.run(args) == 0
    summary = SUMMARY.fullmatch(capsys.readouterr().out[:-1].rsplit("\n", 1)[1])
    assert summary is not None and summary[1] == "256" and summary[2] == "512"


def _llava_copy(tmp_path):
    folder = tmp_path / "llava"
    shutil.copytree(LLAVA, folder)
    return folder


def _edit_json(file, **changes):
    raw = json.loads(file.read_text())
    raw.update(changes)
    file.write_text(json.dumps(raw))


LLAVA_CASES = [
    ("no <video> in the template", lambda d: (d / "chat_template.json").write_text(json.dumps(
        {"chat_template": "{% for m in messages %}{{ m['role'] }}{% endfor %}"})), "0 <video>"),
    ("processor size not the tower's", lambda d: _edit_json(
        d / "preprocessor_config.json", size={"height": 64, "width": 64}), "64x64"),
    ("no preprocessor_config.json", lambda d: (d / "preprocessor_config.json").unlink(),
     "no preprocessor_config.json"),
    ("default feature strategy", lambda d: _edit_json(
        d / "config.json", vision_feature_select_strategy="default"), "vision_feature_select_strategy"),
]


@pytest.mark.parametrize("name, breaks, message", LLAVA_CASES, ids=[c[0] for c in LLAVA_CASES])
def test_llava_bad_input_is_one_line(tmp_path, capsys, name, breaks, message):
    folder = _llava_copy(tmp_path)
    breaks(folder)
    before = _listing(tmp_path)
    status = ask.main(["--model", str(folder), str(CLIP), QUESTION, "--max-new-tokens", "1"])
    err = capsys.readouterr()
    lines = [line for line in err.err.splitlines() if line.startswith("tfs-jax: error:")]
    assert status == 2 and err.out == "" and len(lines) == 1, err.err
    assert message.lower() in lines[0].lower() and "Traceback" not in err.err
    assert _listing(tmp_path) == before
