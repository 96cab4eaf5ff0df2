"""Tests for Qwen2.5-VL's inputs: `video.sample_video` (qwen-vl-utils' frame sampling) by
hand, and `models.qwen2_5_vl.processor` by hand and against transformers 4.51.3's
`Qwen2VLImageProcessor` on the bundled clips (equal bit for bit: the same Pillow bicubic
resize and the same float64-then-float32 arithmetic)."""

import numpy as np
import pytest
from _needs import needs, needs_clips  # noqa: E402  (tests/_needs.py: the one skip rule)

from tfs_jax import video
from tfs_jax.models.qwen2_5_vl import processor


# ---- frame sampling ----------------------------------------------------------------------

@pytest.mark.parametrize("total, rate, want", [
    (250, 25.0, 20),         # 10 s at 2 fps
    (132, 25.0, 10),         # 5.28 s -> 10.56 -> 10
    (120, 30000 / 1001, 8),  # 4.004 s -> 8.008 -> 8
    (190, 25.0, 14),         # 7.6 s -> 15.2 -> 15 -> even 14
    (30, 30.0, 4),           # 1 s -> 2, raised to the 4-frame floor
    (5, 30.0, 4),            # floor 4 <= 5 frames
    (3, 30.0, 2),            # floor 4 capped by max_frames = floor_2(3) = 2
    (36000, 30.0, 768),      # 20 min -> 2400, capped at 768
    (1001, 1.0, 768),        # a slow clip: 2002 > N, capped at 768
    (10, 1.0, 10),           # 20 > N: capped at floor_2(10) = 10
    (11, 1.0, 10),           # capped at floor_2(11) = 10
])
def test_qwen_num_frames_by_hand(total, rate, want):
    assert video.qwen_num_frames(total, rate) == want


def test_qwen_num_frames_knobs_and_refusals():
    assert video.qwen_num_frames(250, 25.0, fps=1.0) == 10
    assert video.qwen_num_frames(250, 25.0, min_frames=5) == 20    # ceil_2(5) = 6 < 20
    assert video.qwen_num_frames(20, 25.0, min_frames=5) == 6      # 1.6 -> 6
    assert video.qwen_num_frames(250, 25.0, max_frames=9) == 8     # floor_2(9)
    with pytest.raises(ValueError, match="1 frame gives 0 frames"):
        video.qwen_num_frames(1, 25.0)
    with pytest.raises(ValueError, match="video_fps"):
        video.qwen_num_frames(100, 0.0)


def test_qwen_frame_indices_by_hand():
    assert video.qwen_frame_indices(250, 20).tolist() == [
        round(i * 249 / 19) for i in range(20)]
    assert video.qwen_frame_indices(6, 3).tolist() == [0, 2, 5]       # 2.5 -> 2 (half even)
    assert video.qwen_frame_indices(8, 3).tolist() == [0, 4, 7]       # 3.5 -> 4 (half even)
    assert video.qwen_frame_indices(4, 4).tolist() == [0, 1, 2, 3]


def _clip(name):
    needs("av")
    return needs_clips(name)[name]


def _all_frames(path):
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_sample_video_on_carphone_by_hand():
    path = _clip("carphone")                 # 120 frames at 30000/1001 fps, 176x144
    sampled = video.sample_video(path, progress=False)
    assert sampled.source_frames == 120 and sampled.source_fps == pytest.approx(30000 / 1001)
    assert sampled.indices.tolist() == [0, 17, 34, 51, 68, 85, 102, 119]  # 119 i / 7
    assert sampled.fps == pytest.approx(8 / 120 * 30000 / 1001)
    assert sampled.frames.shape == (8, 144, 176, 3) and sampled.frames.dtype == np.uint8
    every = _all_frames(path)
    for frame, index in zip(sampled.frames, sampled.indices):
        np.testing.assert_array_equal(frame, every[index])


def test_sample_video_counts_a_stream_without_a_frame_count():
    path = _clip("city")                     # MPEG-PS: no declared count, 190 frames at 25
    sampled = video.sample_video(path, progress=False)
    assert sampled.source_frames == 190 and len(sampled.indices) == 14
    assert sampled.indices[-1] == 189 and sampled.frames.shape[1:] == (405, 720, 3)


def test_sample_video_refuses_a_damaged_clip(tmp_path):
    path = _clip("bikes")
    cut = tmp_path / "cut.mp4"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read video"):
        video.sample_video(cut, progress=False)
    with pytest.raises(ValueError, match="(?i)missing.mp4: no such file"):
        video.sample_video(tmp_path / "missing.mp4", progress=False)
    with pytest.raises(ValueError, match=f"cannot read video {tmp_path}: "):  # a folder
        video.sample_video(tmp_path, progress=False)


# ---- smart_resize and the patch layout by hand --------------------------------------------

@pytest.mark.parametrize("size, budget, want", [
    ((144, 176), {}, (140, 168)),            # round(5.14) = 5, round(6.29) = 6
    ((272, 640), {}, (280, 644)),            # round(9.71) = 10, round(22.86) = 23
    ((176, 144), {}, (168, 140)),            # portrait: the transpose
    ((28, 28), {}, (56, 56)),                # 784 < 3136: beta 2, ceil(2) * 28
    ((1000, 1000), {"max_pixels": 28 * 28 * 4}, (56, 56)),   # beta 17.86, floor(2.0)
    ((272, 640), {"max_pixels": 12544}, (56, 168)),          # beta 3.72: floor(2.6), floor(6.1)
])
def test_smart_resize_by_hand(size, budget, want):
    assert processor.smart_resize(*size, **budget) == want


def test_video_max_pixels_by_hand():
    assert processor.VIDEO_TOTAL_PIXELS == 90316800                    # 128000 * 784 * 0.9
    assert processor.video_max_pixels(20) == 602112                    # 768 * 784: the cap
    assert processor.video_max_pixels(768) == 90316800 / 768 * 2 == 235200
    assert processor.video_max_pixels(2000) == 105369                  # int(100352 * 1.05)
    assert processor.smart_resize(720, 1280, max_pixels=235200.0) == (336, 644)  # beta 1.97
    with pytest.raises(ValueError, match="num_frames=0"):
        processor.video_max_pixels(0)


@pytest.mark.parametrize("size, match", [
    ((27, 100), "27x100 pixels .* at least 28"),
    ((100, 20), "100x20 pixels .* at least 28"),
    ((28, 5657), "aspect ratio over 200"),
])
def test_smart_resize_refuses(size, match):
    with pytest.raises(ValueError, match=match):
        processor.smart_resize(*size)


def test_patch_layout_by_hand():
    """One 56x56 video of 3 frames whose pixel values encode (frame, y, x, channel): the
    rows come out in (t, h/2, w/2, 2, 2) order, each (C, t_p, 14, 14), the last frame
    repeated; values after CLIP's mean and std as computed by hand."""
    t, y, x, c = np.meshgrid(np.arange(3), np.arange(56), np.arange(56), np.arange(3),
                             indexing="ij")
    frames = ((t * 50 + (y // 14) * 10 + (x // 14) * 3 + c) % 256).astype(np.uint8)
    out = processor.preprocess_video(frames, fps=4.0)
    assert out.video_grid_thw.tolist() == [[2, 4, 4]] and out.second_per_grid_ts == 0.5
    pixels = out.pixel_values_videos.reshape(2, 2, 2, 2, 2, 3, 2, 14, 14)  # t bh bw mh mw c tp p p
    mean, std = np.float32(processor.CLIP_MEAN), np.float32(processor.CLIP_STD)
    for (tt, bh, bw, mh, mw, ch, tp) in [(0, 0, 0, 0, 0, 0, 0), (0, 1, 0, 1, 1, 2, 1),
                                          (1, 1, 1, 0, 1, 1, 0), (1, 0, 1, 1, 0, 2, 1)]:
        frame = min(2 * tt + tp, 2)          # frame 3 is frame 2 repeated
        row, col = 2 * bh + mh, 2 * bw + mw  # patch position on the 4x4 grid
        raw = (frame * 50 + row * 10 + col * 3 + ch) % 256
        want = (np.float32(raw / 255) - mean[ch]) / std[ch]
        np.testing.assert_array_equal(pixels[tt, bh, bw, mh, mw, ch, tp], np.full((14, 14), want))


def test_preprocess_refuses_bad_frames():
    good = np.zeros((2, 56, 56, 3), np.uint8)
    with pytest.raises(ValueError, match="20x56 pixels"):
        processor.preprocess_video(np.zeros((2, 20, 56, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        processor.preprocess_video(good.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        processor.preprocess_video(good[..., :2])
    with pytest.raises(ValueError, match="no frame"):
        processor.preprocess_video(good[:0])
    with pytest.raises(ValueError, match="fps=0"):
        processor.preprocess_video(good, fps=0)
    with pytest.raises(ValueError, match="min_pixels=10 and max_pixels=5"):
        processor.preprocess_video(good, min_pixels=10, max_pixels=5)


# ---- against transformers 4.51.3 ---------------------------------------------------------

@pytest.fixture(scope="module")
def reference():
    return needs("transformers", version="4.51.3", why="the processor reference")


@pytest.mark.parametrize("name, transpose, budget", [
    ("carphone", False, {}),                              # 144x176 -> 140x168
    ("carphone", True, {}),                               # portrait 176x144 -> 168x140
    ("bikes", False, {"max_pixels": 28 * 28 * 60}),       # 272x640 -> floor branch 84x224
    ("city", False, {"min_pixels": 600 * 1000}),          # 405x720 -> ceil branch
])
def test_equals_transformers_on_bundled_clips(reference, name, transpose, budget):
    sampled = video.sample_video(_clip(name), progress=False)
    frames = sampled.frames[:5]                            # odd: the last frame is repeated
    if transpose:
        frames = np.ascontiguousarray(frames.transpose(0, 2, 1, 3))
    ours = processor.preprocess_video(frames, fps=sampled.fps, **budget)
    theirs = reference.Qwen2VLImageProcessor(**budget)(images=None, videos=[frames],
                                                       return_tensors="np")
    np.testing.assert_array_equal(ours.video_grid_thw, theirs["video_grid_thw"])
    assert ours.pixel_values_videos.dtype == theirs["pixel_values_videos"].dtype == np.float32
    np.testing.assert_array_equal(ours.pixel_values_videos, theirs["pixel_values_videos"])
    assert ours.pixel_values_videos.shape[1] == 1176
    assert ours.second_per_grid_ts == 2 / sampled.fps


def test_processor_config_reads_as_transformers(reference, tmp_path):
    import json

    for raw in ({"size": {"shortest_edge": 100, "longest_edge": 5000}},
                {"size": {"shortest_edge": 100, "longest_edge": 5000}, "max_pixels": 7000},
                {"min_pixels": 999, "max_pixels": 12544, "patch_size": 14}):
        (tmp_path / "preprocessor_config.json").write_text(
            json.dumps({"image_processor_type": "Qwen2VLImageProcessor", **raw}))
        theirs = reference.Qwen2VLImageProcessor.from_pretrained(tmp_path)
        ours = processor.ProcessorConfig.from_dir(tmp_path)
        assert (ours.min_pixels, ours.max_pixels) == (theirs.min_pixels, theirs.max_pixels)


def test_image_equals_transformers(reference):
    frame = video.sample_video(_clip("carphone"), progress=False).frames[3]
    ours = processor.preprocess_image(frame)
    theirs = reference.Qwen2VLImageProcessor()(images=[frame], return_tensors="np")
    np.testing.assert_array_equal(ours.image_grid_thw, theirs["image_grid_thw"])
    np.testing.assert_array_equal(ours.pixel_values, theirs["pixel_values"])



def test_processor_config_from_dir(tmp_path):
    import json
    import pathlib

    shipped = pathlib.Path(__file__).resolve().parent / "data" / "tiny-qwen2.5-vl"
    config = processor.ProcessorConfig.from_dir(shipped)
    assert (config.min_pixels, config.max_pixels, config.patch_size) == (3136, 12544, 14)
    assert config.image_mean == processor.CLIP_MEAN and config.rescale_factor == 1 / 255
    assert processor.ProcessorConfig.from_dir(tmp_path) == processor.ProcessorConfig()
    file = tmp_path / "preprocessor_config.json"
    # transformers 4.51.3 ignores `size` (its __init__ puts the defaults back): so do we.
    file.write_text(json.dumps({"size": {"shortest_edge": 100, "longest_edge": 5000}}))
    assert processor.ProcessorConfig.from_dir(tmp_path)[:2] == (3136, 1003520)
    file.write_text(json.dumps({"size": {"shortest_edge": 100, "longest_edge": 5000},
                                "max_pixels": 7000}))
    assert processor.ProcessorConfig.from_dir(tmp_path)[:2] == (3136, 7000)
    for raw in ({"resample": 2}, {"do_normalize": False}, {"do_resize": False}):
        file.write_text(json.dumps(raw))
        with pytest.raises(ValueError, match="bicubic"):
            processor.ProcessorConfig.from_dir(tmp_path)
    file.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        processor.ProcessorConfig.from_dir(tmp_path)
    frames = np.zeros((2, 272, 640, 3), np.uint8)   # the budget reaches the resize
    grid = processor.preprocess_video(frames, config=config).video_grid_thw
    assert grid.tolist() == [[1, 4, 12]]             # 56x168 (smart_resize by hand above)


def test_docstring_examples():
    import doctest

    assert doctest.testmod(processor).failed == 0
    for function in (video.qwen_num_frames, video.qwen_frame_indices):
        finder = doctest.DocTestFinder().find(function, globs=vars(video))
        runner = doctest.DocTestRunner()
        for test in finder:
            runner.run(test)
        assert runner.failures == 0 and runner.tries > 0
