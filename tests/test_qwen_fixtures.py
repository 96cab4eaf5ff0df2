"""The committed transformers 4.51.3 outputs (tests/data/, written by make_fixtures.py)
against tfs-jax, with no torch or transformers: they keep 4.51.3's rule in the suite
after the pin moves (from 4.52, `get_rope_index` truncates `second_per_grid_ts`)."""

import json
import pathlib

import numpy as np
import pytest
from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

from tfs_jax.serving import qwen_vl_rope_index

DATA = pathlib.Path(__file__).resolve().parent / "data"
ROPE = json.loads((DATA / "qwen2_5_vl_rope_4.51.3.json").read_text())
CHECKPOINT = DATA / "tiny-qwen2.5-vl"


def test_rope_fixture_is_4_51_3_and_fractional():
    assert ROPE["transformers"] == "4.51.3"
    seconds = [s for case in ROPE["cases"] for s in case["second_per_grid_ts"]]
    assert any(s != int(s) for s in seconds)


@pytest.mark.parametrize("case", ROPE["cases"], ids=[c["name"] for c in ROPE["cases"]])
def test_rope_equals_4_51_3(case):
    positions, delta = qwen_vl_rope_index(
        np.array(case["input_ids"]), np.array(case["video_grid_thw"]),
        video_token_id=case["video_token_id"],
        second_per_grid_ts=np.array(case["second_per_grid_ts"], np.float32),
        tokens_per_second=case["tokens_per_second"],
        image_grid_thw=None if case["image_grid_thw"] is None else np.array(case["image_grid_thw"]),
        image_token_id=case["image_token_id"] if case["image_grid_thw"] else None)
    np.testing.assert_array_equal(positions, np.array(case["positions"]))
    assert delta == case["rope_delta"]


def test_processor_reproduces_the_fixture_inputs():
    from tfs_jax.models.qwen2_5_vl.processor import ProcessorConfig, preprocess_video

    fixture = np.load(DATA / "qwen2_5_vl_4.51.3.npz")
    out = preprocess_video(fixture["frames"], fps=float(fixture["fps"]),
                           config=ProcessorConfig.from_dir(CHECKPOINT))
    np.testing.assert_array_equal(out.video_grid_thw, fixture["video_grid_thw"])
    assert out.second_per_grid_ts == fixture["second_per_grid_ts"][0] == 1.25


def test_sampling_reproduces_the_fixture_frames():
    needs("av")
    from tfs_jax import video

    fixture = np.load(DATA / "qwen2_5_vl_4.51.3.npz")
    sampled = video.sample_video(DATA / "tiny_clip.mp4", progress=False)
    np.testing.assert_array_equal(sampled.indices, fixture["indices"])   # 44 i / 5 rounded
    assert sampled.indices.tolist() == [0, 9, 18, 26, 35, 44] and sampled.fps == float(fixture["fps"])
    np.testing.assert_array_equal(sampled.frames, fixture["frames"])


def test_logits_equal_4_51_3():
    """The tiny checkpoint's float32 logits for the fixture's prompt, within 1e-4 of
    transformers' (the same bf16 weights read as float32 on both sides)."""
    import jax
    import jax.numpy as jnp

    from tfs_jax import models
    from tfs_jax.models.qwen2_5_vl.processor import ProcessorConfig, preprocess_video

    fixture = np.load(DATA / "qwen2_5_vl_4.51.3.npz")
    inputs = preprocess_video(fixture["frames"], fps=float(fixture["fps"]),
                              config=ProcessorConfig.from_dir(CHECKPOINT))
    model = models.load(CHECKPOINT, dtype=jnp.float32)
    with jax.default_matmul_precision("highest"):
        out = model.forward(fixture["input_ids"], pixel_values_videos=inputs.pixel_values_videos,
                            video_grid_thw=inputs.video_grid_thw,
                            second_per_grid_ts=[inputs.second_per_grid_ts])
    np.testing.assert_allclose(np.asarray(out.logits), fixture["logits"], atol=1e-4, rtol=0)
