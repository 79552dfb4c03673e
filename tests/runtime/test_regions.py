"""An answer per region of a video: the SPEC and its errors, grids and zones on a mosaic of
colours a taught model knows, a detector file of the documented layout (and files that are not),
the built-in people detector, and the answer's JSON form."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from actionrec.errors import DetectorUnavailableError, RegionsError
from actionrec.runtime.answer import Prediction
from actionrec.runtime.regions import read_regions
from actionrec.runtime.tracks import link_tracks
from actionrec.testing.regions import QUARTER_COLOURS, colour_mosaic, detector_file, taught_colours_model
from actionrec.video.encode import write_video
from actionrec.video.regions import MAX_REGIONS, Box, parse_regions, square_box

MOSAIC = [["red", "blue"], ["green", "yellow"]]


# --------------------------------------------------------------------------- the SPEC


def test_specs_parse():
    grid = parse_regions("grid:2x3")
    assert (grid.source, grid.columns, grid.rows) == ("grid", 2, 3)
    assert grid.region_ids() == ["r1c1", "r1c2", "r2c1", "r2c2", "r3c1", "r3c2"]
    assert grid.pixel_boxes(640, 480)[:3] == [(0, 0, 320, 160), (320, 0, 320, 160), (0, 160, 320, 160)]
    zones = parse_regions("10,20,100,50; 0.5,0,0.5,1")
    assert zones.boxes == (Box(10, 20, 100, 50, False), Box(0.5, 0, 0.5, 1, True))
    assert zones.pixel_boxes(640, 480) == [(10, 20, 100, 50), (320, 0, 320, 480)]
    assert zones.region_ids() == ["zone1", "zone2"]
    assert parse_regions(" People ").source == "people"
    assert parse_regions("detector:models/yolo.onnx").detector == "models/yolo.onnx"


@pytest.mark.parametrize(("spec", "says"), [
    ("grid:2", "grid:CxR"), ("grid:0x2", "at least one column"), ("grid:5x4", "more than the 16 regions"),
    ("corners", "is not x,y,w,h"), ("1,2,3", "is not x,y,w,h"), ("10,10,0,40", "has no size"),
    ("0.6,0,0.5,1", "reaches outside the frame"), (";".join(["0,0,20,20"] * (MAX_REGIONS + 1)), "more than the 16"),
    ("", "empty"), ("detector:", "name the detector's ONNX file"),
])
def test_bad_specs_say_what_is_wrong(spec: str, says: str):
    with pytest.raises(RegionsError, match=says):
        parse_regions(spec)


def test_pixel_boxes_are_checked_against_the_frame():
    with pytest.raises(RegionsError, match=r"zone1 \(600,0,100,100\) reaches outside the 640x480 frame"):
        parse_regions("600,0,100,100").pixel_boxes(640, 480)
    with pytest.raises(RegionsError, match="at least 16 pixels a side"):
        parse_regions("grid:4x4").pixel_boxes(64, 48)


def test_a_persons_box_is_cropped_as_a_square_inside_the_frame():
    assert square_box((100, 50, 40, 120), 640, 480) == (60, 50, 120, 120)
    assert square_box((0, 0, 40, 120), 640, 480) == (0, 0, 120, 120)  # moved inside
    assert square_box((0, 0, 100, 300), 320, 240) == (0, 0, 240, 240)  # shrunk to the frame


def test_tracks_link_overlapping_boxes_and_drop_brief_ones():
    moments = [[(0, 0, 50, 100), (200, 0, 50, 100)], [(4, 0, 50, 100)], [(8, 0, 50, 100), (200, 2, 50, 100)],
               [(12, 0, 50, 100), (400, 0, 30, 30)]]
    tracks, dropped = link_tracks(moments)
    assert [sorted(track.seen) for track in tracks] == [[0, 1, 2, 3], [0, 2]]  # a gap is allowed
    assert dropped == 1  # the box seen once
    assert tracks[0].nearest(1) == 1 and tracks[1].nearest(1) == 0
    capped, dropped = link_tracks(moments, cap=1)  # a server's --max-regions: the track seen most often
    assert [sorted(track.seen) for track in capped] == [[0, 1, 2, 3]] and dropped == 2


# --------------------------------------------------------------------------- answers


@pytest.fixture(scope="module")
def colours_model(tmp_path_factory) -> Path:
    """A model taught the four colours of QUARTER_COLOURS on a small untrained base."""
    pytest.importorskip("torch", reason="making the base model needs the train extra (torch)")
    return taught_colours_model(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def recognizer(colours_model: Path):
    from actionrec.runtime.recognizer import Recognizer

    return Recognizer(colours_model)


def test_a_grid_names_each_cell(recognizer, tmp_path: Path):
    video = colour_mosaic(tmp_path / "mosaic.mp4", MOSAIC, seed=7)
    prediction = recognizer.predict(video, regions="grid:2x2", top_k=2)
    assert [(r.id, r.action, r.box) for r in prediction.regions] == [
        ("r1c1", "red", [0, 0, 64, 48]), ("r1c2", "blue", [64, 0, 64, 48]),
        ("r2c1", "green", [0, 48, 64, 48]), ("r2c2", "yellow", [64, 48, 64, 48])]
    assert all(len(r.top_k) == 2 and r.boxes is None and r.unknown_check is not None for r in prediction.regions)
    plain = recognizer.predict(video, top_k=2)  # the whole video's answer is the plain one
    assert (prediction.action, prediction.confidence) == (plain.action, plain.confidence)
    assert prediction.video.frames_used == plain.video.frames_used

    again = Prediction.from_dict(prediction.to_dict())  # the JSON form reads back
    assert again == prediction and again.to_dict()["regions"][0]["id"] == "r1c1"


def test_zones_in_pixels_and_fractions(recognizer, tmp_path: Path):
    video = colour_mosaic(tmp_path / "mosaic.mp4", MOSAIC, seed=8)
    prediction = recognizer.predict(video, regions="64,0,64,48;0,0.5,0.5,0.5")
    assert [(r.id, r.action, r.box) for r in prediction.regions] == [
        ("zone1", "blue", [64, 0, 64, 48]), ("zone2", "green", [0, 48, 64, 48])]
    with pytest.raises(RegionsError, match="reaches outside the 128x96 frame"):
        recognizer.predict(video, regions="100,0,64,48")
    with pytest.raises(RegionsError, match="people are answered without one"):
        recognizer.predict(video, regions="people", segments=True)


def test_each_cell_gets_its_own_timeline(recognizer, tmp_path: Path):
    rng = np.random.default_rng(3)

    def half(name: str, frames: int) -> np.ndarray:
        return np.broadcast_to(np.array(QUARTER_COLOURS[name], np.int16), (frames, 48, 64, 3))

    left = np.concatenate([half("red", 45), half("blue", 45)])  # 3 s of red, then 3 s of blue
    frames = np.concatenate([left, half("green", 90)], axis=2) + rng.integers(-30, 30, (90, 48, 128, 3))
    video = tmp_path / "halves.mp4"
    write_video(np.clip(frames, 0, 255).astype(np.uint8), video, 15.0)
    prediction = recognizer.predict(video, regions="grid:2x1", segments=True)
    assert prediction.segments  # the whole video's timeline too
    left_cell, right_cell = prediction.regions
    assert [s.action for s in left_cell.segments] == ["red", "blue"], left_cell.segments
    assert 2.0 <= left_cell.segments[0].end_s <= 4.0
    assert [s.action for s in right_cell.segments] == ["green"] and right_cell.box == [64, 0, 64, 48]


def test_a_detector_file_finds_people_and_their_tracks_are_named(recognizer, tmp_path: Path):
    video = colour_mosaic(tmp_path / "mosaic.mp4", MOSAIC, cell=(64, 64), seed=9)
    # the input is 64 x 64: the 128 x 128 video is scaled by half; people in the top-left and bottom-right cells
    detector = detector_file(tmp_path / "people.onnx", [(16, 16, 30, 30, 0.9), (48, 48, 30, 30, 0.8),
                                                        (17, 16, 30, 30, 0.6), (50, 10, 4, 4, 0.1)])
    prediction = recognizer.predict(video, regions=f"detector:{detector}")
    regions = prediction.regions
    assert [(r.id, r.action, r.box) for r in regions] == [("person1", "red", [2, 2, 60, 60]),
                                                          ("person2", "yellow", [66, 66, 60, 60])]
    times = prediction.video.frame_times_s
    assert regions[0].boxes == [[t, 2, 2, 60, 60] for t in times]  # seen at every sampled moment
    assert "detect" in prediction.timings_ms

    nobody = detector_file(tmp_path / "nobody.onnx", [(16, 16, 30, 30, 0.1)])
    empty = recognizer.predict(video, regions=f"detector:{nobody}")
    assert empty.regions == [] and any("no person was found" in w for w in empty.warnings)


@pytest.mark.parametrize(("make", "says"), [
    (lambda path: path.write_bytes(b"not onnx") and path, "ONNX Runtime cannot load it"),
    (lambda path: detector_file(path, [(1, 1, 1, 1, 1)], output_shape=(1, 12)), r"gives \(1, 12\), not"),
    (lambda path: path.parent / "missing.onnx", "no such file"),
])
def test_files_that_are_not_detectors_are_refused_before_reading(recognizer, tmp_path: Path, make, says: str):
    detector = make(tmp_path / "bad.onnx")
    with pytest.raises(RegionsError, match=says):
        recognizer.predict(tmp_path / "no-video-needed.mp4", regions=f"detector:{detector}")


def test_people_without_opencv_names_the_extra(recognizer, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(DetectorUnavailableError, match=r"actionrec\[people\]"):
        recognizer.predict(tmp_path / "no-video-needed.mp4", regions="people")


def test_the_built_in_detector_says_when_it_finds_nobody(recognizer, tmp_path: Path):
    pytest.importorskip("cv2", reason="the built-in people detector needs the people extra (OpenCV)")
    video = colour_mosaic(tmp_path / "mosaic.mp4", MOSAIC, seed=10)
    prediction = recognizer.predict(video, regions="people")
    assert prediction.regions == [] and "no person was found" in prediction.warnings[-1]
    assert prediction.action in {"red", "blue", "green", "yellow"}  # the whole video is still answered
    frame = np.zeros((240, 320, 3), np.uint8)
    assert recognizer.detector(parse_regions("people"))(frame) == []


def test_boxes_are_in_the_displayed_frame_of_a_rotated_video(recognizer, sample_videos: Path):
    video = sample_videos / "rotated_90.mov"  # stored 568 x 320, shown 320 x 568
    prediction = recognizer.predict(video, regions="grid:1x2")
    assert (prediction.video.width, prediction.video.height) == (320, 568)
    assert [r.box for r in prediction.regions] == [[0, 0, 320, 284], [0, 284, 320, 284]]
    # the whole frame as a zone is what the video's answer reads (resized from RGB rather than from the
    # decoded YUV: a level or two apart), turned the same way
    read = read_regions(video, recognizer.spec, recognizer.limits, parse_regions("0,0,1,1"))
    whole = np.stack([frame.whole for frame in read.frames]).astype(int)
    zone = np.stack([frame.crops[0] for frame in read.frames]).astype(int)
    assert np.abs(whole - zone).mean() < 3 < np.abs(whole - np.rot90(zone, axes=(1, 2))).mean()
