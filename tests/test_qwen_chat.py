"""Tests for tfs_jax/models/chat.py: where the chat template is found, how it renders, and
the prompt ids, against transformers 4.51.3's processor on the shipped tiny checkpoint
(tests/data/tiny-qwen2.5-vl, written by tests/data/make_fixtures.py) and against the ids
that script committed (those need no transformers)."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

from tfs_jax.models import chat

DATA = pathlib.Path(__file__).resolve().parent / "data"
CHECKPOINT = DATA / "tiny-qwen2.5-vl"
FIXTURE = DATA / "qwen2_5_vl_4.51.3.npz"
QUESTION = "What is moving in this video?"


@pytest.fixture(scope="module")
def hf():
    return needs("transformers", version="4.51.3", why="the chat template reference")


def test_template_order(tmp_path):
    """chat_template.jinja, then chat_template.json, then tokenizer_config.json."""
    with pytest.raises(ValueError, match="no chat template"):
        chat.find_chat_template(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "tok"}))
    assert chat.find_chat_template(tmp_path) == "tok"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "proc"}))
    assert chat.find_chat_template(tmp_path) == "proc"
    (tmp_path / "chat_template.jinja").write_text("raw")
    assert chat.find_chat_template(tmp_path) == "raw"


def test_named_templates_pick_default(tmp_path):
    named = [{"name": "tool_use", "template": "t"}, {"name": "default", "template": "d"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": named}))
    assert chat.find_chat_template(tmp_path) == "d"


def test_render_features_of_transformers_environment():
    template = ("{% for m in messages %}\n  {% if loop.index > 1 %}{% break %}{% endif %}\n"
                "{{ m | tojson }}\n{% endfor %}{{ eos_token }}")
    out = chat.render_chat_template(template, [{"a": "<é>"}, {"b": 2}], eos_token="E")
    assert out == '{"a": "<é>"}\nE'                   # trim/lstrip, no HTML escape, break
    with pytest.raises(ValueError, match="the chat template fails: nope"):
        chat.render_chat_template("{{ raise_exception('nope') }}", [])
    with pytest.raises(ValueError, match="chat template fails"):  # sandboxed and immutable
        chat.render_chat_template("{{ messages.append(1) }}", [])


def test_expand_placeholders_by_hand():
    text = "a<|video_pad|>b<|image_pad|>c<|video_pad|>"
    out = chat.expand_placeholders(text, video_grid_thw=[[2, 4, 4], [1, 2, 2]],
                                   image_grid_thw=[[1, 2, 4]])
    assert out == "a" + "<|video_pad|>" * 8 + "b" + "<|image_pad|>" * 2 + "c<|video_pad|>"
    with pytest.raises(ValueError, match="2 <|video_pad|> placeholders but 1 grids"):
        chat.expand_placeholders(text, video_grid_thw=[[2, 4, 4]], image_grid_thw=[[1, 2, 4]])
    with pytest.raises(ValueError, match="1 <|image_pad|> placeholders but 0 grids"):
        chat.expand_placeholders(text, video_grid_thw=[[2, 4, 4], [1, 2, 2]])


def test_prompt_equals_the_committed_fixture():
    """Without transformers: the committed 4.51.3 prompt text and ids are reproduced."""
    fixture = np.load(FIXTURE)
    tokens = chat.Chat.from_dir(CHECKPOINT)
    text = tokens.render(chat.video_question(QUESTION))
    assert text == str(fixture["text"])
    expanded = chat.expand_placeholders(text, video_grid_thw=fixture["video_grid_thw"])
    np.testing.assert_array_equal(tokens.encode(expanded), fixture["input_ids"])


def test_render_and_ids_equal_the_processor(hf):
    processor = hf.AutoProcessor.from_pretrained(CHECKPOINT)
    tokens = chat.Chat.from_dir(CHECKPOINT)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "First"}, {"type": "video"},
                                             {"type": "text", "text": "then"}, {"type": "video"},
                                             {"type": "image"}, {"type": "text", "text": "?"}]}]
    text = tokens.render(messages)
    assert text == processor.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
    videos = [np.zeros((4, 56, 84, 3), np.uint8), np.zeros((3, 84, 56, 3), np.uint8)]
    image = np.zeros((56, 56, 3), np.uint8)
    theirs = processor(text=[text], videos=videos, images=[image], return_tensors="np")
    expanded = chat.expand_placeholders(text, video_grid_thw=theirs["video_grid_thw"],
                                        image_grid_thw=theirs["image_grid_thw"])
    np.testing.assert_array_equal(tokens.encode(expanded), theirs["input_ids"][0])


def test_tokenizer_template_alone_equals_the_tokenizer(hf, tmp_path):
    """With chat_template.json gone, the tokenizer's own (text-only) template is used, as
    AutoTokenizer's apply_chat_template uses it."""
    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, folder)
    (folder / "chat_template.json").unlink()
    tokens = chat.Chat.from_dir(folder)
    messages = [{"role": "user", "content": "Hi there"}]
    tokenizer = hf.AutoTokenizer.from_pretrained(folder)
    assert tokens.render(messages) == tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    np.testing.assert_array_equal(tokens.encode(tokens.render(messages)), ids)
    assert tokens.decode(ids) == tokenizer.decode(ids, skip_special_tokens=True)


def test_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        chat.Chat.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json does not parse"):
        chat.Chat.from_dir(tmp_path)
