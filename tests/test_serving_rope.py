"""Tests for tfs_jax/serving/rope.py: M-RoPE positions of pruned Qwen-VL prompts.

Hand tables (both conventions, arithmetic in the comments), pruning as column deletion
(tables and hypothesis), transformers 4.51.3's own `get_rope_index` for Qwen2-VL and
Qwen2.5-VL (models built on the meta device from tiny configs: no weights, the real method
on the real config), and the bad-input matrix. The transformers tests skip where torch or
transformers is missing; CI installs them with the `serving-test` extra.
"""

import doctest
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)
from hypothesis import given
from hypothesis import strategies as st

from tfs_jax.serving import qwen_vl_rope_index
from tfs_jax.serving import rope

# Token ids: text is 1..5, the markers Qwen puts around every vision run are text too.
START, END, IMAGE, VIDEO = 6, 7, 8, 9


def _rope(ids, videos, **kwargs):
    return qwen_vl_rope_index(np.asarray(ids), videos, video_token_id=VIDEO, **kwargs)


def _same(t, h, w):
    """A text-only stretch: the three rows agree."""
    return [t, h, w]


# (name, ids, video_grid_thw, kwargs, qwen positions, qwen delta, transformers5 positions,
# transformers5 delta). Merge size 2 everywhere; h' = h/2, w' = w/2; s = where a run starts.
V = [VIDEO]
I = [IMAGE]
TABLE = [
    # No vision: 0..3 on every axis; delta = 3 + 1 - 4 = 0.
    ("text only", [1, 2, 3, 4], None, {},
     [[0, 1, 2, 3]] * 3, 0, [[0, 1, 2, 3]] * 3, 0),
    # grid (2, 2, 4): t=2, h'=1, w'=2, 4 tokens at s=2: (i,j,k) -> (2+i, 2+j, 2+k).
    # qwen: text at 2 + max(T=1, 0, 1) + 1 = 4; t5: 2 + max(1, 2) = 4. delta 4 + 1 - 7 = -2.
    ("one video", [1, 2] + V * 4 + [3], [[2, 2, 4]], {},
     [[0, 1, 2, 2, 3, 3, 4], [0, 1, 2, 2, 2, 2, 4], [0, 1, 2, 3, 2, 3, 4]], -2,
     [[0, 1, 2, 2, 3, 3, 4], [0, 1, 2, 2, 2, 2, 4], [0, 1, 2, 3, 2, 3, 4]], -2),
    # (1, 4, 4) at s=1 (h'=w'=2), next at 1 + 1 + 1 = 3 (t5: 1 + 2 = 3, the same);
    # (2, 2, 2) at s=3 (t=2, h'=w'=1): T 3, 4. qwen: text at 3 + max(1, 0, 0) + 1 = 5,
    # delta 5 + 1 - 8 = -2. t5: text at 3 + max(1, 1) = 4 (= the 2nd frame's T),
    # delta 4 + 1 - 8 = -3.
    ("two videos back to back", [1] + V * 4 + V * 2 + [2], [[1, 4, 4], [2, 2, 2]], {},
     [[0, 1, 1, 1, 1, 3, 4, 5], [0, 1, 1, 2, 2, 3, 3, 5], [0, 1, 2, 1, 2, 3, 3, 5]], -2,
     [[0, 1, 1, 1, 1, 3, 4, 4], [0, 1, 1, 2, 2, 3, 3, 4], [0, 1, 2, 1, 2, 3, 3, 4]], -3),
    # (1, 4, 4) at s=1, text 3, 4; (1, 4, 4) at s=5, text at 5 + 2 = 7 (both conventions).
    # delta 7 + 1 - 12 = -4.
    ("text between", [1] + V * 4 + [2, 3] + V * 4 + [4], [[1, 4, 4], [1, 4, 4]], {},
     [[0, 1, 1, 1, 1, 3, 4, 5, 5, 5, 5, 7],
      [0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7],
      [0, 1, 2, 1, 2, 3, 4, 5, 6, 5, 6, 7]], -4,
     [[0, 1, 1, 1, 1, 3, 4, 5, 5, 5, 5, 7],
      [0, 1, 1, 2, 2, 3, 4, 5, 5, 6, 6, 7],
      [0, 1, 2, 1, 2, 3, 4, 5, 6, 5, 6, 7]], -4),
    # Qwen2.5, sec 1.25, tps 2: T_i = trunc(i * 1.25 * 2) = 0, trunc(2.5) = 2, 5 (the same
    # in both orders: times 2 is exact). (3, 2, 2): h'=w'=1 at s=1: T 1, 3, 6.
    # qwen: text at 1 + 5 + 1 = 7, 8; delta 8 + 1 - 6 = 3.
    # t5: text at 1 + max(1, 1) = 2, 3 (under the video's T 3 and 6); delta 6 + 1 - 6 = 1.
    ("time scaling, step 2.5", [1] + V * 3 + [2, 3], [[3, 2, 2]],
     {"second_per_grid_ts": [1.25], "tokens_per_second": 2},
     [[0, 1, 3, 6, 7, 8], [0, 1, 1, 1, 7, 8], [0, 1, 1, 1, 7, 8]], 3,
     [[0, 1, 3, 6, 2, 3], [0, 1, 1, 1, 2, 3], [0, 1, 1, 1, 2, 3]], 1),
    # sec 0.25, tps 2: step 0.5, T_i = trunc(0, 0.5, 1, 1.5) = 0, 0, 1, 1; video first, s=0.
    # qwen: text at 0 + 1 + 1 = 2, delta 2 + 1 - 5 = -2. t5: text at 0 + 1 = 1, delta -3.
    ("time scaling, step 0.5", V * 4 + [1], [[4, 2, 2]],
     {"second_per_grid_ts": [0.25], "tokens_per_second": 2},
     [[0, 0, 1, 1, 2], [0, 0, 0, 0, 2], [0, 0, 0, 0, 2]], -2,
     [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]], -3),
    # The float32 orders differ. sec = f32(0.7) = 0.69999999, tps 25, (7, 2, 2) at s=0.
    # qwen: i * sec then * 25: i=6: f32(6 * 0.7) = 4.1999998, * 25 = 104.99999 -> 104;
    # (i=1..5: 17.5 -> 17, 35, 52.499998 -> 52, 70, 87.5 -> 87). Text at 104 + 1 = 105;
    # delta 105 + 1 - 8 = 98. t5: step f32(25 * 0.7) = 17.5, i=6: 105.0 -> 105; text at
    # 0 + 1 = 1; delta 105 + 1 - 8 = 98.
    ("float32 order", V * 7 + [1], [[7, 2, 2]],
     {"second_per_grid_ts": [0.7], "tokens_per_second": 25},
     [[0, 17, 35, 52, 70, 87, 104, 105], [0] * 7 + [105], [0] * 7 + [105]], 98,
     [[0, 17, 35, 52, 70, 87, 105, 1], [0] * 7 + [1], [0] * 7 + [1]], 98),
    # Qwen3: one row (2, 2, 4) read as two frames (1, 2, 4), a timestamp token 5 before each.
    # Frame 0 at s=2: (2,2,2), (2,2,3); text at 2 + max(0, 0, 1) + 1 = 4 (t5: 2 + 2 = 4);
    # frame 1 at s=5: (5,5,5), (5,5,6); text at 7. delta 7 + 1 - 8 = 0.
    ("qwen3 frames", [1, 5] + V * 2 + [5] + V * 2 + [2], [[2, 2, 4]], {"split_frames": True},
     [[0, 1, 2, 2, 4, 5, 5, 7], [0, 1, 2, 2, 4, 5, 5, 7], [0, 1, 2, 3, 4, 5, 6, 7]], 0,
     [[0, 1, 2, 2, 4, 5, 5, 7], [0, 1, 2, 2, 4, 5, 5, 7], [0, 1, 2, 3, 4, 5, 6, 7]], 0),
    # Image (1, 4, 4) at s=1, never scaled: T 1,1,1,1; text at 3 (both). Video (2, 2, 2),
    # sec 0.5, tps 2: T_i = 0, 1, at s=4: T 4, 5. qwen: text at 4 + 1 + 1 = 6, delta
    # 6 + 1 - 9 = -2; t5: text at 4 + 1 = 5, delta 5 + 1 - 9 = -3.
    ("image then video", [1] + I * 4 + [2] + V * 2 + [3], [[2, 2, 2]],
     {"image_grid_thw": [[1, 4, 4]], "image_token_id": IMAGE,
      "second_per_grid_ts": [0.5], "tokens_per_second": 2},
     [[0, 1, 1, 1, 1, 3, 4, 5, 6], [0, 1, 1, 2, 2, 3, 4, 4, 6], [0, 1, 2, 1, 2, 3, 4, 4, 6]], -2,
     [[0, 1, 1, 1, 1, 3, 4, 5, 5], [0, 1, 1, 2, 2, 3, 4, 4, 5], [0, 1, 2, 1, 2, 3, 4, 4, 5]], -3),
    # Video (2, 2, 2) at s=0: T 0, 1. qwen: text at 2, image (1, 4, 4) at s=3, text at
    # 3 + 1 + 1 = 5, delta 5 + 1 - 8 = -2. t5: text at 0 + 1 = 1, image at s=2, text at
    # 2 + 2 = 4, delta 4 + 1 - 8 = -3.
    ("video then image", V * 2 + [1] + I * 4 + [2], [[2, 2, 2]],
     {"image_grid_thw": [[1, 4, 4]], "image_token_id": IMAGE},
     [[0, 1, 2, 3, 3, 3, 3, 5], [0, 0, 2, 3, 3, 4, 4, 5], [0, 0, 2, 3, 4, 3, 4, 5]], -2,
     [[0, 1, 1, 2, 2, 2, 2, 4], [0, 0, 1, 2, 2, 3, 3, 4], [0, 0, 1, 2, 3, 2, 3, 4]], -3),
    # Ends with video: (2, 2, 4), sec 1.25, tps 2: T_i = 0, 2; at s=2: T 2, 2, 4, 4.
    # Both: delta = max 4 + 1 - 6 = -1, so decoding starts at 6 - 1 = 5, past the video.
    ("ends with video", [1, 2] + V * 4, [[2, 2, 4]],
     {"second_per_grid_ts": [1.25], "tokens_per_second": 2},
     [[0, 1, 2, 2, 4, 4], [0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 2, 3]], -1,
     [[0, 1, 2, 2, 4, 4], [0, 1, 2, 2, 2, 2], [0, 1, 2, 3, 2, 3]], -1),
]


@pytest.mark.parametrize("convention", ["qwen", "transformers5"])
@pytest.mark.parametrize("case", TABLE, ids=[case[0] for case in TABLE])
def test_hand_table(case, convention):
    _, ids, videos, kwargs, qwen, qwen_delta, t5, t5_delta = case
    positions, delta = _rope(ids, videos, convention=convention, **kwargs)
    want, want_delta = (qwen, qwen_delta) if convention == "qwen" else (t5, t5_delta)
    np.testing.assert_array_equal(positions, np.array(want))
    assert delta == want_delta
    assert positions.dtype == np.int32 and type(delta) is int


def test_ends_with_video_pruned_keeps_the_decoding_position():
    # The table's last case with frame 1 (T = 4) dropped: l' = 4, max stays 4 (the unpruned
    # prompt's), so delta = 4 + 1 - 4 = 1 and decoding starts at 4 + 1 = 5 as before.
    keep = np.array([True, True, False, False])
    positions, delta = _rope([1, 2] + V * 4, [[2, 2, 4]], keep=keep,
                             second_per_grid_ts=[1.25], tokens_per_second=2)
    np.testing.assert_array_equal(positions, [[0, 1, 2, 2], [0, 1, 2, 2], [0, 1, 2, 3]])
    assert delta == 1 and positions.shape[1] + delta == 5


@pytest.mark.parametrize("case", TABLE, ids=[case[0] for case in TABLE])
def test_pruning_deletes_columns_on_the_tables(case):
    _, ids, videos, kwargs, *_ = case
    ids = np.asarray(ids)
    count = int((ids == VIDEO).sum())
    keep = np.arange(count) % 3 != 1  # drop every third placeholder
    full, full_delta = _rope(ids, videos, **kwargs)
    pruned, delta = _rope(ids, videos, keep=keep, **kwargs)
    columns = np.ones(len(ids), bool)
    columns[ids == VIDEO] = keep
    np.testing.assert_array_equal(pruned, full[:, columns])
    assert pruned.shape[1] + delta == len(ids) + full_delta


def test_rows_of_one_frame_split_or_not_agree():
    ids = [1, 5] + V * 2 + [5] + V * 2 + [2]
    given = _rope(ids, [[1, 2, 4], [1, 2, 4]])
    split = _rope(ids, [[2, 2, 4]], split_frames=True)
    presplit = _rope(ids, [[1, 2, 4], [1, 2, 4]], split_frames=True)
    for got in (split, presplit):
        np.testing.assert_array_equal(got[0], given[0])
        assert got[1] == given[1]


def test_host_inputs_of_every_kind():
    ids, grid = [1] + V * 4 + [2], [[1, 4, 4]]
    want, want_delta = _rope(ids, grid)
    keep = [True] * 4
    kinds = [(jnp.asarray(ids), jnp.asarray(grid)), (ids, grid), (np.int32(ids), np.int16(grid))]
    for args in kinds:
        got, delta = qwen_vl_rope_index(*args, video_token_id=VIDEO, keep=jnp.asarray(keep))
        np.testing.assert_array_equal(got, want)
        assert delta == want_delta and isinstance(got, np.ndarray)


def test_docstring_example():
    assert doctest.testmod(rope, raise_on_error=True).attempted > 0


def test_serving_import_stays_light():
    heavy = ["flax", "torch", "transformers", "onnx", "av", "matplotlib"]
    code = (
        "import sys, tfs_jax.serving; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- Random prompts -----------------------------------------------------------------------

even = st.integers(1, 3).map(lambda x: 2 * x)
grids = st.tuples(st.integers(1, 4), even, even)
texts = st.lists(st.integers(1, 5), max_size=3)
# Steps where truncation bites (0.7 and 5/3 round differently in the two float32 orders).
fractional = (st.sampled_from([0.25, 0.5, 0.7, 1.25, 1 / 3, 5 / 3, 0.083])
              | st.floats(0, 3, width=32))


@st.composite
def prompts(draw, *, images=True, markers=True, seconds=st.none() | st.just(True)):
    """A prompt of text and 1-3 videos (and 0-2 images), in random order.

    `markers` wraps every run in START ... END as Qwen's processors do (transformers 4.51
    finds runs through them); without, two videos can touch. Returns a dict of arguments.
    """
    kinds = ["video"] * draw(st.integers(1, 3))
    kinds += ["image"] * (draw(st.integers(0, 2)) if images else 0)
    ids, videos, pictures = [], [], []
    for kind in draw(st.permutations(kinds)):
        t, h, w = draw(grids)
        t = 1 if kind == "image" else t
        run = [VIDEO if kind == "video" else IMAGE] * (t * h * w // 4)
        ids += draw(texts) + ([START] + run + [END] if markers else run)
        (videos if kind == "video" else pictures).append((t, h, w))
    ids += draw(texts)
    args = {"input_ids": np.array(ids), "video_grid_thw": np.array(videos)}
    if draw(seconds) is not None:
        args["second_per_grid_ts"] = np.array(
            draw(st.lists(fractional, min_size=len(videos), max_size=len(videos))), np.float32)
        args["tokens_per_second"] = draw(st.sampled_from([2, 4, 25]))
    if pictures:
        args["image_grid_thw"], args["image_token_id"] = np.array(pictures), IMAGE
    return args


def _placeholders(args):
    return int((args["input_ids"] == VIDEO).sum())


@given(prompts(markers=False), st.data(), st.sampled_from(rope.CONVENTIONS))
def test_pruning_is_column_deletion(args, data, convention):
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=_placeholders(args),
                                       max_size=_placeholders(args))), bool)
    full, full_delta = qwen_vl_rope_index(**args, video_token_id=VIDEO, convention=convention)
    pruned, delta = qwen_vl_rope_index(**args, video_token_id=VIDEO, convention=convention,
                                       keep=keep)
    columns = np.ones(len(args["input_ids"]), bool)
    columns[args["input_ids"] == VIDEO] = keep
    np.testing.assert_array_equal(pruned, full[:, columns])
    assert pruned.shape[1] + delta == len(args["input_ids"]) + full_delta
    assert pruned.shape[1] + delta == full.max() + 1  # decoding starts past every position


@given(prompts(markers=False), st.sampled_from(rope.CONVENTIONS))
def test_text_positions(args, convention):
    ids = args["input_ids"]
    positions, _ = qwen_vl_rope_index(**args, video_token_id=VIDEO, convention=convention)
    text = positions[:, (ids != VIDEO) & (ids != IMAGE)]
    assert np.all(text[0] == text[1]) and np.all(text[0] == text[2])
    assert np.all(np.diff(text[0]) > 0)  # strictly increasing, in both conventions
    if convention == "qwen":
        # ...and every text token sits past everything before it.
        running = np.maximum.accumulate(positions.max(axis=0))
        is_text = (ids != VIDEO) & (ids != IMAGE)
        assert np.all(positions[0, 1:][is_text[1:]] > running[:-1][is_text[1:]])


@given(prompts(markers=False))
def test_vision_runs_are_grids(args):
    ids, m = args["input_ids"], 2
    positions, _ = qwen_vl_rope_index(**args, video_token_id=VIDEO)
    video = positions[:, ids == VIDEO]
    first = 0
    for t, h, w in args["video_grid_thw"]:
        block = video[:, first:first + t * h * w // 4].reshape(3, t, h // m, w // m)
        s = block[1, 0, 0, 0]
        assert block[2, 0, 0, 0] == s and block[0, 0, 0, 0] == s
        assert np.all(block[0] == block[0, :, :1, :1])  # one time per merged frame
        np.testing.assert_array_equal(block[1] - s, np.broadcast_to(np.arange(h // m)[:, None],
                                                                    block[1].shape))
        np.testing.assert_array_equal(block[2] - s, np.broadcast_to(np.arange(w // m),
                                                                    block[2].shape))
        assert np.all(np.diff(block[0, :, 0, 0]) >= 0)  # time never runs backwards
        first += t * h * w // 4


@given(prompts(markers=True, seconds=st.none()))
def test_conventions_agree_on_qwen3_frames(args):
    # One-frame runs have no temporal extent: the two text rules coincide.
    qwen = qwen_vl_rope_index(**args, video_token_id=VIDEO, split_frames=True)
    t5 = qwen_vl_rope_index(**args, video_token_id=VIDEO, split_frames=True,
                            convention="transformers5")
    np.testing.assert_array_equal(qwen[0], t5[0])
    assert qwen[1] == t5[1]


# ---- Against transformers 4.51.3's get_rope_index ----------------------------------------

TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=16,
            rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
            image_token_id=IMAGE, video_token_id=VIDEO,
            vision_start_token_id=START, vision_end_token_id=END)


@pytest.fixture(scope="module")
def hf():
    """Qwen2-VL and Qwen2.5-VL (per tokens_per_second) built without weights."""
    torch = needs("torch", why="transformers' get_rope_index")
    transformers = needs("transformers", version="4.51.3", why="the M-RoPE reference")
    vision = dict(depth=1, hidden_size=16, num_heads=2, spatial_merge_size=2)
    with torch.device("meta"):  # shapes only: get_rope_index reads config and input ids
        qwen2 = transformers.Qwen2VLForConditionalGeneration(transformers.Qwen2VLConfig(
            **TINY, vision_config=dict(vision, embed_dim=16, mlp_ratio=1)))
        qwen25 = {}
        for tps in (2, 4, 25):
            config = transformers.Qwen2_5_VLConfig(**TINY, vision_config=dict(
                vision, intermediate_size=16, out_hidden_size=16, fullatt_block_indexes=[0],
                tokens_per_second=tps))
            qwen25[tps] = transformers.Qwen2_5_VLForConditionalGeneration(config)
    return torch, qwen2, qwen25


def _reference(torch, model, args, **extra):
    """transformers' positions `(3, l)` and delta for one prompt."""
    def tensor(name):
        return None if name not in args else torch.from_numpy(np.asarray(args[name]))
    positions, delta = model.get_rope_index(
        torch.from_numpy(args["input_ids"])[None], tensor("image_grid_thw"),
        tensor("video_grid_thw"), **extra)
    return positions[:, 0].numpy(), int(delta[0, 0])


def _check_against(reference, args, keep):
    full, full_delta = reference
    ours, delta = qwen_vl_rope_index(**args, video_token_id=VIDEO)
    np.testing.assert_array_equal(ours, full)
    assert delta == full_delta
    pruned, pruned_delta = qwen_vl_rope_index(**args, video_token_id=VIDEO, keep=keep)
    columns = np.ones(len(args["input_ids"]), bool)
    columns[args["input_ids"] == VIDEO] = keep
    np.testing.assert_array_equal(pruned, full[:, columns])
    assert pruned.shape[1] + pruned_delta == len(args["input_ids"]) + full_delta


@given(prompts(seconds=st.none()), st.data())
def test_matches_transformers_qwen2_vl(hf, args, data):
    torch, qwen2, _ = hf
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=_placeholders(args),
                                       max_size=_placeholders(args))), bool)
    _check_against(_reference(torch, qwen2, args), args, keep)


@given(prompts(seconds=st.just(True)), st.data())
def test_matches_transformers_qwen2_5_vl(hf, args, data):
    torch, _, qwen25 = hf
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=_placeholders(args),
                                       max_size=_placeholders(args))), bool)
    model = qwen25[args["tokens_per_second"]]
    seconds = torch.from_numpy(args["second_per_grid_ts"])  # float32, as the processor gives
    _check_against(_reference(torch, model, args, second_per_grid_ts=seconds), args, keep)


def test_matches_transformers_at_the_float32_rounding_point(hf):
    # The table's "float32 order" case (i=6: 104, where one rounding of the step gives 105).
    torch, _, qwen25 = hf
    args = {"input_ids": np.array([1, START] + V * 7 + [END]),
            "video_grid_thw": np.array([[7, 2, 2]]),
            "second_per_grid_ts": np.array([0.7], np.float32), "tokens_per_second": 25}
    reference = _reference(torch, qwen25[25], args,
                           second_per_grid_ts=torch.from_numpy(args["second_per_grid_ts"]))
    assert reference[0][0, 8] == 2 + 104
    _check_against(reference, args, np.ones(7, bool))


@given(prompts(images=False, seconds=st.none()))
def test_split_frames_matches_qwen3_reading(hf, args):
    # Qwen3-VL's get_rope_index is Qwen2-VL's loop over rows split into single frames, with
    # timestamp text and START/END around every frame: build that prompt and compare.
    torch, qwen2, _ = hf
    ids, frames = [], []
    for t, h, w in args["video_grid_thw"]:
        for _ in range(t):
            ids += [5, 4, START] + V * (h * w // 4) + [END]
            frames.append((1, h, w))
    ids = np.array(ids + [1])
    split = {"input_ids": ids, "video_grid_thw": np.array(frames)}
    full, full_delta = _reference(torch, qwen2, split)
    for convention in rope.CONVENTIONS:
        ours, delta = qwen_vl_rope_index(ids, args["video_grid_thw"], video_token_id=VIDEO,
                                         split_frames=True, convention=convention)
        np.testing.assert_array_equal(ours, full)
        assert delta == full_delta


# ---- Bad input ---------------------------------------------------------------------------

GOOD_IDS, GOOD_GRID = np.array([1] + V * 4 + [2]), np.array([[1, 4, 4]])

# (case, replaced or added arguments, what the message must name)
BAD = [
    ("2-D input_ids", {"input_ids": GOOD_IDS[None]}, "1-D"),
    ("empty input_ids", {"input_ids": np.array([], np.int64)}, "non-empty"),
    ("float input_ids", {"input_ids": GOOD_IDS.astype(np.float32)}, "integer"),
    ("bool input_ids", {"input_ids": GOOD_IDS > 3}, "integer"),
    ("too few placeholders", {"input_ids": GOOD_IDS[1:-2]}, "placeholders"),
    ("too many placeholders", {"input_ids": np.array([1] + V * 5)}, "placeholders"),
    ("no grid for placeholders", {"video_grid_thw": None}, "placeholders"),
    ("split run", {"input_ids": np.array(V * 2 + [1] + V * 2)}, "contiguous"),
    ("h not divisible", {"video_grid_thw": np.array([[1, 3, 4]])}, "multiples"),
    ("w not divisible", {"video_grid_thw": np.array([[1, 4, 3]])}, "multiples"),
    ("zero t", {"video_grid_thw": np.array([[0, 4, 4]])}, "positive"),
    ("negative h", {"video_grid_thw": np.array([[1, -4, 4]])}, "positive"),
    ("grid of rank 1", {"video_grid_thw": np.array([1, 4, 4])}, "(n, 3)"),
    ("grid of 2 columns", {"video_grid_thw": np.array([[4, 4]])}, "(n, 3)"),
    ("float grid", {"video_grid_thw": np.array([[1.0, 4.0, 4.0]])}, "integers"),
    ("short keep", {"keep": np.ones(3, bool)}, "keep"),
    ("2-D keep", {"keep": np.ones((1, 4), bool)}, "keep"),
    ("int keep", {"keep": np.ones(4, np.int32)}, "bool"),
    ("seconds too long", {"second_per_grid_ts": [1.0, 1.0]}, "second_per_grid_ts"),
    ("scalar seconds", {"second_per_grid_ts": 1.0}, "second_per_grid_ts"),
    ("negative seconds", {"second_per_grid_ts": [-0.5]}, "non-negative"),
    ("nan seconds", {"second_per_grid_ts": [np.nan]}, "finite"),
    ("string seconds", {"second_per_grid_ts": ["1"]}, "real numbers"),
    ("complex seconds", {"second_per_grid_ts": np.array([1.0 + 0.5j])}, "real numbers"),
    ("bool seconds", {"second_per_grid_ts": np.array([True])}, "real numbers"),
    ("seconds overflow", {"second_per_grid_ts": [1e9], "video_grid_thw": np.array([[2, 2, 2]]),
                          "input_ids": np.array(V * 2), "tokens_per_second": 25}, "int32"),
    ("unknown convention", {"convention": "vllm"}, "convention"),
    ("grid without image id", {"image_grid_thw": np.array([[1, 4, 4]])}, "together"),
    ("image id without grid", {"image_token_id": IMAGE}, "together"),
    ("image of 2 frames", {"image_grid_thw": np.array([[2, 4, 4]]), "image_token_id": IMAGE},
     "t = 1"),
    ("image placeholders missing", {"image_grid_thw": np.array([[1, 4, 4]]),
                                    "image_token_id": IMAGE}, "image placeholders"),
    ("image id is the video id", {"image_grid_thw": np.zeros((0, 3), np.int64),
                                  "image_token_id": VIDEO}, "differ"),
    ("merge size 0", {"spatial_merge_size": 0}, "spatial_merge_size"),
    ("merge size 2.0", {"spatial_merge_size": 2.0}, "spatial_merge_size"),
    ("float video id", {"video_token_id": 9.0}, "video_token_id"),
    ("zero tokens per second", {"tokens_per_second": 0}, "tokens_per_second"),
    ("bool tokens per second", {"tokens_per_second": True}, "tokens_per_second"),
    ("numpy bool tokens per second", {"tokens_per_second": np.bool_(True)}, "tokens_per_second"),
    ("infinite tokens per second", {"tokens_per_second": np.inf}, "tokens_per_second"),
    ("split_frames as a string", {"split_frames": "yes"}, "split_frames"),
    ("split_frames as an int", {"split_frames": 1}, "split_frames=1 must be a bool"),
]


@pytest.mark.parametrize("case", BAD, ids=[case[0] for case in BAD])
def test_bad_input(case):
    _, change, names = case
    args = {"input_ids": GOOD_IDS, "video_grid_thw": GOOD_GRID, "video_token_id": VIDEO,
            **change}
    positional = args.pop("input_ids"), args.pop("video_grid_thw")
    with pytest.raises(ValueError, match=re.escape(names)):
        qwen_vl_rope_index(*positional, **args)


def test_traced_input_is_refused():
    def traced(ids):
        return qwen_vl_rope_index(ids, GOOD_GRID, video_token_id=VIDEO)[0]

    with pytest.raises(ValueError, match="traced"):
        jax.jit(traced)(GOOD_IDS)
