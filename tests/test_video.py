"""Tests for tfs_jax/video.py: sampling and geometry by hand, decoding of the bundled clips
against an independent PyAV + Pillow path, the errors for bad files, and damaged streams
(truncated or corrupted copies of a bundled clip) refused unless allow_partial=True."""

import numpy as np
import pytest

from tfs_jax import video
from tfs_jax.video import bundled_clips, load_video, resized_shape, sample_indices

from _needs import needs, needs_clips  # tests/_needs.py: the one skip rule

av = needs("av", why="decoding videos")

import _damaged  # noqa: E402  (tests/_damaged.py; needs av)


def _clip(name: str):
    return needs_clips(name)[name]


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
    monkeypatch.setattr(video, "_count_frames", lambda clip: 300)  # truly 120
    np.testing.assert_array_equal(load_video(path, 5, progress=False), expected)
    monkeypatch.setattr(video, "_count_frames", lambda clip: 40)
    np.testing.assert_array_equal(load_video(path, 5, progress=False), expected)


def test_bundled_clips_are_real_files():
    clips = needs_clips()
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


# ----------------------------------------------------------------------------------------
# Damaged streams (built by tests/_damaged.py from carphone, milliseconds each)


def test_every_bundled_clip_decodes_as_intact():
    clips = needs_clips()
    for name, path in clips.items():
        read = video.read_video(path, 2, progress=False)
        assert not read.partial and read.error is None, name
        assert read.frames_expected in (None, read.frames_decoded), name
        assert read.source_frames.tolist() == sample_indices(read.frames_decoded, 2).tolist()


def test_read_video_reports_an_intact_clip(tmp_path):
    read = video.read_video(_damaged.remux(tmp_path / "c.mp4"), 4, progress=False)
    assert (read.frames_decoded, read.frames_expected, read.partial, read.error) == (
        120, 120, False, None)
    assert read.source_frames.tolist() == [15, 45, 75, 105]
    np.testing.assert_array_equal(read.frames, load_video(_clip("carphone"), 4, progress=False))


def test_one_frame_clip_repeats_frame_zero(tmp_path):
    read = video.read_video(_damaged.remux(tmp_path / "one.mp4", packets=1), 5, progress=False)
    assert (read.frames_decoded, read.frames_expected, read.partial) == (1, 1, False)
    assert read.source_frames.tolist() == [0] * 5
    assert all(np.array_equal(f, read.frames[0]) for f in read.frames)


DAMAGE = {
    # kind: (frames decoded, what the message says)
    "cut-at-packet-1": (1, "the stream ends after 1 frame of the 120 its container declares"),
    "cut-mid-packet": (None, "its container declares"),
    "cut-in-last-packet": (None, "flagged corrupt by the demuxer"),
    "bad-nal": (None, "decoding failed after"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_stream_is_refused_unless_allow_partial(kind, tmp_path):
    path = _damaged.damaged(tmp_path, kind)
    decoded, says = DAMAGE[kind]
    with pytest.raises(video.DamagedVideoError, match=says) as info:
        load_video(path, 4, progress=False)
    err = info.value
    assert isinstance(err, ValueError) and "\n" not in str(err)
    assert str(err).startswith(f"cannot read video {path}: ") and "allow_partial=True" in str(err)
    assert err.expected == 120 and 1 <= err.decoded < 120 and err.path == path
    assert decoded in (None, err.decoded)
    read = video.read_video(path, 4, progress=False, allow_partial=True)
    assert read.partial and read.error == err.reason
    assert (read.frames_decoded, read.frames_expected) == (err.decoded, 120)
    assert read.source_frames.tolist() == sample_indices(err.decoded, 4).tolist()
    assert read.frames.shape == (4, 224, 224, 3)
    np.testing.assert_array_equal(
        load_video(path, 4, progress=False, allow_partial=True), read.frames)


def test_cut_mpeg_ps_reads_as_a_shorter_clip(tmp_path):
    # A documented limit: MPEG-PS declares no frame count, so a cut file looks intact.
    path = tmp_path / "city.mpg"
    path.write_bytes(_clip("city").read_bytes()[:1_400_000])
    read = video.read_video(path, 2, progress=False)
    assert not read.partial and read.frames_expected is None and 40 < read.frames_decoded < 190


# ----------------------------------------------------------------------------------------
# Native aspect: `resize=` keeps the whole frame (tests/_clips.py writes the clips)


def test_fit_pixel_budget_hand_cases():
    fit = video.fit_pixel_budget
    assert fit(480, 480) == (224, 224)  # B = 256: floor(sqrt(256)) = 16 tokens a side
    assert fit(640, 360) == (294, 168)  # sqrt(256 * 640 / 360) = 21.3, sqrt(256 * 360 / 640) = 12
    assert fit(32, 1600) == (28, 1582)  # sqrt(5.12) = 2.26, sqrt(12800) = 113.1
    assert fit(1, 100000) == (14, 256 * 14)  # one row; the other side capped at B
    assert fit(100000, 1) == (256 * 14, 14)
    assert fit(360, 640, max_pixels=1024 * 28 * 28, multiple=28) == (672, 1176)  # 24 x 42
    for h, w in [(272, 640), (144, 176), (7, 9), (3000, 17)]:
        gh, gw = (s // 14 for s in fit(h, w))
        assert gh * gw <= 256 and gh >= 1 and gw >= 1
    with pytest.raises(ValueError, match="max_pixels"):
        fit(10, 10, max_pixels=100)


@pytest.mark.parametrize("width, height, shape", [(360, 640, (294, 168)), (1600, 32, (28, 1582))])
def test_resize_keeps_the_whole_frame(width, height, shape, tmp_path):
    import functools

    import _clips  # tests/_clips.py

    path = _clips.write(tmp_path / "clip.mp4", width, height)
    budget = functools.partial(video.fit_pixel_budget, max_pixels=256 * 14 * 14)
    read = video.read_video(path, 4, resize=budget,
                            progress=False)
    assert read.frames.shape == (4, *shape, 3) and read.source_size == (height, width)
    for name, colour in _clips.band_colours(read.frames[2]).items():
        np.testing.assert_allclose(colour, _clips.BANDS[name], atol=8, err_msg=name)
    # The default square crop loses the bands along the longer side: what resize= fixes.
    cropped = _clips.band_colours(video.read_video(path, 4, progress=False).frames[2])
    lost = ("top", "bottom") if height > width else ("left", "right")
    for name in lost:
        assert np.abs(cropped[name] - _clips.BANDS[name]).max() > 60, name


def test_a_video_is_opened_once(monkeypatch, tmp_path):
    import _clips

    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    path = _clips.write(tmp_path / "clip.mp4", 64, 48)  # writing opens it too
    opened.clear()
    video.read_video(path, 3, progress=False)
    assert opened == [str(path)]
    city = bundled_clips().get("city")  # no frame count: a demux pass, then the decoding
    if city is not None:
        opened.clear()
        assert video.read_video(city, 3, progress=False).frames_decoded == 190
        assert opened == [str(city)]
