"""media.analysis and its parts on generated clips: the best frame, the thumbnails'
sizes, the quality's verdicts, keyframe-only decoding."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from media.analysis import analyze
from media.ffmpeg import ffmpeg_path
from media.frame_scores import BLACK_LUMA
from media.isolation import run_isolated
from media.keyframes import SAMPLE_COUNT, sample_keyframes
from media.probe import probe_details
from media.thumbnails import THUMBNAIL_FORMATS, THUMBNAIL_WIDTHS

ALL_NAMES = {f"{w}.{ext}" for w in THUMBNAIL_WIDTHS for ext in THUMBNAIL_FORMATS}


def test_the_thumbnail_is_the_sharpest_keyframe_that_is_not_black(
    black_then_sharp: Path, tmp_path: Path
) -> None:
    result = analyze(str(black_then_sharp), str(tmp_path), ffmpeg_path())

    samples = sample_keyframes(black_then_sharp).frames
    assert any(f.score.black for f in samples), "the clip's black start was not sampled"
    showing = [f for f in samples if not f.score.black and not f.score.blank]
    sharpest = max(showing, key=lambda f: f.score.sharpness)
    assert result["thumbnails"]["frame_time"] == sharpest.time
    assert result["thumbnails"]["frame_time"] >= 6.0  # in the sharp part, not the blurred
    with Image.open(tmp_path / "1280.jpg") as written:
        luma = np.asarray(written.convert("L"), dtype=float).mean()
    assert luma > 2 * BLACK_LUMA


def test_every_size_exists_in_both_formats_and_none_is_upscaled(
    black_then_sharp: Path, tmp_path: Path
) -> None:
    result = analyze(str(black_then_sharp), str(tmp_path), ffmpeg_path())

    assert result["thumbnails"]["widths"] == [160, 320, 640, 1280]
    assert {p.name for p in tmp_path.iterdir()} == ALL_NAMES  # and no temporary file
    for name in ALL_NAMES:
        with Image.open(tmp_path / name) as image:
            nominal = int(name.split(".")[0])
            assert image.format == ("WEBP" if name.endswith(".webp") else "JPEG")
            assert image.width == min(nominal, 480), name
            assert image.height == round(270 * image.width / 480), name


def test_a_blurred_copy_scores_lower_than_the_sharp_clip(
    sharp_clip: Path, blurred_clip: Path, tmp_path: Path
) -> None:
    sharp = analyze(str(sharp_clip), str(tmp_path / "sharp"), ffmpeg_path())["quality"]
    blurred = analyze(str(blurred_clip), str(tmp_path / "blurred"), ffmpeg_path())["quality"]

    assert blurred["sharpness"] < sharp["sharpness"] / 10
    assert blurred["score"] < sharp["score"]
    assert sharp["resolution_class"] == blurred["resolution_class"] == "SD"


def test_a_240p_clip_may_have_a_better_version(low_res_clip: Path, tmp_path: Path) -> None:
    quality = analyze(str(low_res_clip), str(tmp_path), ffmpeg_path())["quality"]

    assert quality["resolution_class"] == "SD"
    assert quality["better_version"] is True


def test_a_clip_without_an_audio_stream_has_no_audio(silent_clip: Path, tmp_path: Path) -> None:
    quality = analyze(str(silent_clip), str(tmp_path), ffmpeg_path())["quality"]

    assert quality["audio"] is False and quality["loudness"] is None


def test_a_clip_with_a_tone_has_audio_of_a_plausible_loudness(
    sharp_clip: Path, tmp_path: Path
) -> None:
    quality = analyze(str(sharp_clip), str(tmp_path), ffmpeg_path())["quality"]

    assert quality["audio"] is True
    assert -30 < quality["loudness"] < -10  # lavfi's sine: amplitude 1/8, about -22 LUFS


def test_an_audio_only_file_has_no_thumbnails_and_no_video_verdicts(
    audio_only: Path, tmp_path: Path
) -> None:
    result = analyze(str(audio_only), str(tmp_path / "thumbs"), ffmpeg_path())

    assert result["thumbnails"] == {"widths": [], "frame_time": None}
    assert not (tmp_path / "thumbs").exists()
    quality = result["quality"]
    assert quality["resolution_class"] is None and quality["sharpness"] is None
    assert quality["audio"] is True and quality["loudness"] is not None
    assert 0 <= quality["score"] <= 100
    assert quality["label"] in {"excellent", "good", "fair", "poor"}


def test_only_keyframes_are_decoded(minute_clip: Path) -> None:
    samples = sample_keyframes(minute_clip)

    assert len(samples.frames) == SAMPLE_COUNT
    assert samples.decoded <= SAMPLE_COUNT + 2  # of 1500 frames
    times = [f.time for f in samples.frames]
    assert times == sorted(times) and times[0] < 6 and times[-1] > 54


def test_the_probe_lists_every_stream(sharp_clip: Path) -> None:
    details = probe_details(sharp_clip)

    assert details["container"] == "mov,mp4,m4a,3gp,3g2,mj2"
    assert details["size"] == sharp_clip.stat().st_size
    assert 3.5 < details["duration"] < 4.5 and details["bit_rate"] > 0
    video, audio = details["streams"]
    assert video["type"] == "video" and video["codec"] == "h264"
    assert (video["width"], video["height"], video["fps"]) == (640, 360, 25.0)
    assert video["pix_fmt"] == "yuv420p" and video["bit_rate"] > 0
    assert audio["type"] == "audio" and audio["codec"] == "aac" and audio["profile"] == "LC"
    assert audio["channels"] == 1 and audio["sample_rate"] == 44100
    assert json.loads(json.dumps(details)) == details


def test_a_previous_probe_is_used_instead_of_probing(sharp_clip: Path, tmp_path: Path) -> None:
    previous = probe_details(sharp_clip) | {"kept": "from the row"}

    result = analyze(str(sharp_clip), str(tmp_path), ffmpeg_path(), previous_probe=previous)

    assert result["probe"] == previous


def test_the_analysis_runs_in_an_isolated_process(silent_clip: Path, tmp_path: Path) -> None:
    kwargs = {
        "path": str(silent_clip),
        "thumbnails_dir": str(tmp_path),
        "ffmpeg_location": ffmpeg_path(),
    }
    result = run_isolated(analyze, kwargs=kwargs)

    assert result["thumbnails"]["widths"] == [160, 320, 640, 1280]
    assert pickle.loads(pickle.dumps(result)) == result
