"""The web page in real headless Chromium: upload, answer with bars, timeline, errors, keyboard.

Needs Debian's Chromium at /usr/bin/chromium and the playwright Python package (no browser
download). The screenshot after an upload is kept as artifacts/web-upload.png.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from actionrec.datasets.synth import render_clip
from actionrec.testing.processes import serve_command
from actionrec.video.encode import write_video

pytestmark = pytest.mark.browser

LABELS = ["grow", "shrink", "brighten", "darken"]



@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(3)
    short = folder / "grow.mp4"
    write_video(render_clip("grow", rng, num_frames=50), short, 25)
    long = folder / "two-actions.mp4"
    write_video(np.concatenate([render_clip("brighten", rng, num_frames=125),
                                render_clip("shrink", rng, num_frames=125)]), long, 25)
    return {"short": short, "long": long}


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    folder = tmp_path_factory.mktemp("web")
    model = make_untrained_model(folder / "model.onnx", labels=LABELS)
    examples = folder / "examples"
    examples.mkdir()
    rng = np.random.default_rng(8)
    for label in ("shrink", "darken"):
        write_video(render_clip(label, rng, num_frames=40), examples / f"{label}_0001.mp4", 25)
    with serve_command([str(model), "--workers", "1", "--examples", str(examples)], folder / "server.log") as url:
        yield url + "/"




@pytest.fixture(scope="module")
def camera_browser(launch_chromium, tmp_path_factory: pytest.TempPathFactory):
    """Chromium whose camera is a fake device playing a clip the test makes (Y4M, as Chromium wants)."""
    clip = tmp_path_factory.mktemp("camera") / "camera.y4m"
    frames = render_clip("grow", np.random.default_rng(5), width=320, height=240, num_frames=100)
    with av.open(str(clip), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    chromium = launch_chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                               f"--use-file-for-fake-video-capture={clip}")
    yield chromium
    chromium.close()


def open_page(browser, server_url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url)
    # The name shows a placeholder until GET /v1/model has answered.
    page.wait_for_function("() => !['', '\u2026'].includes(document.querySelector('#model-name').textContent.trim())")
    return page, errors


@pytest.fixture
def page(browser, server_url: str):
    page, errors = open_page(browser, server_url)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_camera_mode_shows_the_live_action(camera_browser, server_url: str, artifacts) -> None:
    page, errors = open_page(camera_browser, server_url)
    page.click("#camera-start")
    page.wait_for_function("() => document.querySelector('#camera-label').dataset.label", timeout=60_000)
    assert page.get_attribute("#camera-label", "data-label") in LABELS
    assert page.is_visible("#camera-video") and page.is_hidden("#drop-zone")
    assert page.inner_text("#answer-eyebrow").startswith("Live")
    assert page.locator("#bars li").count() == len(LABELS)
    assert "a frame every" in page.inner_text("#camera-status")
    page.screenshot(path=str(artifacts / "web-camera.png"), full_page=True)
    page.click("#camera-stop")
    assert page.is_hidden("#camera") and page.is_visible("#drop-zone")
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_for_answer(page) -> None:
    page.wait_for_selector("#state-result:not([hidden]), #state-error:not([hidden])", timeout=60_000)
    if page.is_visible("#state-error"):
        pytest.fail(f"the page showed an error: {page.inner_text('#state-error')}")


def test_page_describes_the_model(page) -> None:
    assert page.inner_text("#model-name") == "untrained-test-model"
    assert "version 0" in page.inner_text("#model-version")
    assert "none (untrained)" in page.inner_text("#model-dataset")
    assert "not a UCF101 model" in page.inner_text("#model-notice")
    chips = page.locator("#label-list li")
    assert sorted(chips.evaluate_all("nodes => nodes.map(n => n.dataset.label)")) == sorted(LABELS)
    assert page.is_visible("#label-list")
    assert page.is_hidden("#key-card")  # no API key on this server


def test_upload_shows_answer_and_bars(page, clips: dict[str, Path], artifacts) -> None:
    page.set_input_files("#file-input", str(clips["short"]))
    assert page.locator("#video").get_attribute("src").startswith("blob:")
    wait_for_answer(page)

    assert page.locator("#action-name").get_attribute("data-label") in LABELS
    assert page.inner_text("#action-name").strip()
    bars = page.locator("#bars li")
    assert 4 <= bars.count() <= 5
    for i in range(bars.count()):
        bar = bars.nth(i)
        assert bar.get_attribute("data-label") in LABELS
        assert bar.locator(".bar-value").inner_text().endswith("%")
    assert bars.first.get_attribute("data-label") == page.locator("#action-name").get_attribute("data-label")
    confidence = page.inner_text("#confidence")
    assert confidence.endswith("sure") and "%" in confidence
    if page.is_visible("#uncertain-note"):
        assert "none of the 4 actions" in page.inner_text("#uncertain-note")
    assert page.is_hidden("#timeline")  # a 2 s clip is one window: no timeline

    page.wait_for_function("document.getElementById('video').readyState >= 3")
    page.wait_for_timeout(1500)  # the bars' growth and the player's loading spinner fade-out
    page.screenshot(path=str(artifacts / "web-upload.png"), full_page=True)


def test_regions_are_drawn_over_the_video(page, tmp_path: Path, artifacts) -> None:
    from actionrec.testing.regions import colour_mosaic

    mosaic = colour_mosaic(tmp_path / "mosaic.mp4", [["red", "blue"], ["green", "yellow"]], cell=(160, 120))
    page.set_input_files("#file-input", str(mosaic))
    wait_for_answer(page)  # the whole video's answer first; a choice of regions asks again
    assert page.is_hidden("#regions-list")
    page.select_option("#regions-choice", "grid:2x2")
    page.wait_for_function("() => document.querySelectorAll('#regions-list li').length === 4", timeout=60_000)
    assert page.locator("#regions-list li").evaluate_all("nodes => nodes.map(n => n.dataset.region)") == [
        "r1c1", "r1c2", "r2c1", "r2c2"]
    assert all(label in LABELS for label in page.locator("#regions-list li").evaluate_all(
        "nodes => nodes.map(n => n.dataset.label)"))
    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    drawn = """() => { const c = document.getElementById('regions-overlay');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n > 1000; }"""
    page.wait_for_function(drawn)  # four boxes and their labels
    page.screenshot(path=str(artifacts / "web-regions.png"), full_page=True)

    page.select_option("#regions-choice", "zone")  # a zone drawn on the video: its answer alone
    box = page.locator("#regions-overlay").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45, steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.querySelectorAll('#regions-list li').length === 1", timeout=60_000)
    assert page.locator("#regions-list li").get_attribute("data-region") == "zone1"


def test_long_video_gets_a_timeline_that_seeks(page, clips: dict[str, Path]) -> None:
    page.set_input_files("#file-input", str(clips["long"]))
    wait_for_answer(page)
    assert page.is_visible("#timeline")
    segments = page.locator("#track .segment")
    assert segments.count() >= 1
    assert all(label in LABELS for label in segments.evaluate_all("nodes => nodes.map(n => n.dataset.label)"))

    page.wait_for_function("document.getElementById('video').readyState >= 1")
    last = segments.last
    start = float(last.get_attribute("data-start"))
    page.evaluate("document.getElementById('video').currentTime = 9")
    last.click()
    page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - {start}) < 0.05")


def test_non_video_file_gets_a_plain_error(page) -> None:
    page.set_input_files("#file-input", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
    page.wait_for_selector("#state-error:not([hidden])")
    assert page.inner_text("#error-title") == "This file isn't a video"
    assert "notes.txt" in page.inner_text("#error-text")


def test_unreadable_video_gets_a_plain_error(page) -> None:
    page.set_input_files("#file-input", {"name": "broken.mp4", "mimeType": "video/mp4", "buffer": os.urandom(4000)})
    page.wait_for_selector("#state-error:not([hidden])", timeout=60_000)
    assert page.inner_text("#error-title") == "This file isn't a video we can read"
    assert page.is_visible("#drop-zone")  # back to choosing a file
    said = page.inner_text("#error-detail")  # the server's `problem`: its words, without "the uploaded video: "
    assert said.startswith("Not a video file") and "uploaded video" not in said


def test_the_page_takes_the_servers_video_extensions(page) -> None:
    from actionrec.video.probe import VIDEO_EXTENSIONS

    assert page.get_attribute("#file-input", "accept") == ",".join(["video/*", *VIDEO_EXTENSIONS])
    assert page.get_attribute("#teach-file-input", "accept") == ",".join(["video/*", *VIDEO_EXTENSIONS])
    assert "MP4" in page.inner_text("#drop-hint") and "MPEG" in page.inner_text("#drop-hint")
    # a file without a type is judged by its name: by the server's list, not one of the page's own
    page.set_input_files("#file-input", {"name": "clip.wmv", "mimeType": "application/octet-stream",
                                         "buffer": b"not sent"})
    page.wait_for_selector("#state-error:not([hidden])")
    assert page.inner_text("#error-title") == "This file isn't a video"
    assert "MKV" in page.inner_text("#error-text")


def fake_answer(page, status: int, body: dict) -> None:
    page.route("**/v1/predictions*", lambda route: route.fulfill(status=status, json=body))


@pytest.mark.parametrize("status, body, title, detail", [
    # the reason decides, whatever the status: these statuses are not the ones the server uses
    (500, {"detail": "the uploaded video: lasts 99 s", "reason": "too_long", "problem": "Lasts 99 s"},
     "This video is too long", "Lasts 99 s"),
    (422, {"detail": "The server is busy.", "reason": "busy"}, "The server is busy", ""),
    (400, {"detail": "This server needs an API key.", "reason": "api_key_missing"}, "This server needs an API key", ""),
    (413, {"detail": "Something new.", "reason": "a_reason_the_page_does_not_know"},
     "Something went wrong on the server", "Something new."),
])
def test_failures_are_told_by_their_reason(page, clips: dict[str, Path], status: int, body: dict, title: str,
                                           detail: str) -> None:
    fake_answer(page, status, body)
    page.set_input_files("#file-input", str(clips["short"]))
    page.wait_for_selector("#state-error:not([hidden])")
    assert page.inner_text("#error-title") == title
    assert page.inner_text("#error-detail") == detail if detail else page.is_hidden("#error-detail")
    assert page.is_visible("#key-card") == body["reason"].startswith("api_key")


def test_warnings_are_told_by_their_code(page, clips: dict[str, Path]) -> None:
    answer = {"action": "grow", "confidence": 0.3, "message": "Success", "uncertain": True, "segments": None,
              "top_k": [{"action": "grow", "confidence": 0.3}, {"action": "shrink", "confidence": 0.2}],
              "video": {"duration_s": 2.0, "fps": 25.0, "width": 128, "height": 96, "codec": "h264",
                        "num_frames": 50, "frames_used": [0, 16, 33, 49]},
              "timings_ms": {"decode": 10.0, "inference": 5.0, "total": 20.0},
              "warnings": ["Unsure, in other words.", "The stream broke at 1.5 s."],
              "warning_details": [{"code": "unsure", "text": "Unsure, in other words."},
                                  {"code": "decoding", "text": "The stream broke at 1.5 s."}]}
    fake_answer(page, 200, answer)
    page.set_input_files("#file-input", str(clips["short"]))
    wait_for_answer(page)
    assert page.is_visible("#uncertain-note")
    assert page.locator("#warnings li").all_inner_texts() == ["The stream broke at 1.5 s."]


def test_drop_zone_works_from_the_keyboard(page, clips: dict[str, Path]) -> None:
    # Listen before any key press: file chooser interception is switched on asynchronously, and
    # `expect_file_chooser` around the press sometimes starts it too late to see the dialog.
    choosers: list = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "drop-zone":
            break
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")

    page.keyboard.press("Enter")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(100)
    assert choosers, "Enter on the drop zone did not open a file chooser"
    choosers[0].set_files(str(clips["short"]))
    wait_for_answer(page)
    assert page.locator("#action-name").get_attribute("data-label") in LABELS


def test_page_works_offline(browser, server_url: str) -> None:
    """Everything the page loads comes from the server itself."""
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server_url)
    # The name shows a placeholder until GET /v1/model has answered.
    page.wait_for_function("() => !['', '\u2026'].includes(document.querySelector('#model-name').textContent.trim())")
    page.close()
    outside = [url for url in requested if not (url.startswith(server_url) or url.startswith(("data:", "blob:")))]
    assert not outside, f"the page fetched from elsewhere: {outside}"


def test_narrow_screen_layout(browser, server_url: str) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(server_url)
    # The name shows a placeholder until GET /v1/model has answered.
    page.wait_for_function("() => !['', '\u2026'].includes(document.querySelector('#model-name').textContent.trim())")
    width = page.evaluate("document.documentElement.scrollWidth")
    page.close()
    assert width <= 390, "the page scrolls sideways on a phone-sized screen"


def test_web_files_name_no_other_hosts() -> None:
    web = Path(__file__).resolve().parents[2] / "src" / "actionrec" / "serve" / "web"
    for path in web.iterdir():
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")  # an XML namespace, not a fetch
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_example_videos_can_be_tried_with_one_click(page) -> None:
    buttons = page.locator("#example-list button")
    assert buttons.count() == 2 and page.is_visible("#examples")
    assert sorted(buttons.all_inner_texts()) == ["Darken", "Shrink"]
    page.click("#example-list button[data-name='darken_0001.mp4']")
    wait_for_answer(page)
    assert "darken_0001.mp4" in page.inner_text("#file-name")
    assert page.locator("#action-name").get_attribute("data-label") in LABELS


def test_api_docs_render_offline(browser, server_url: str) -> None:
    context = browser.new_context(offline=False)
    page = context.new_page()
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server_url)
                  else route.abort())  # nothing from outside the server may load
    page.goto(server_url + "docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".opblock-summary-path", has_text="/v1/predictions").count() >= 1
    context.close()


# --------------------------------------------------------------------------- Teach mode


@pytest.fixture(scope="module")
def teach_server_url(tmp_path_factory: pytest.TempPathFactory):
    """A server that teaches: an encoder with fitted batch norm, and a folder for clips and models."""
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    folder = tmp_path_factory.mktemp("teach-web")
    model = make_untrained_model(folder / "base.onnx", labels=LABELS, fitted_batch_norm=True)
    with serve_command([str(model), "--workers", "1", "--data-dir", str(folder / "data")],
                       folder / "server.log") as url:
        yield url + "/"


@pytest.fixture(scope="module")
def red_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("red")
    rng = np.random.default_rng(11)
    clips = []
    for i in range(3):
        video = np.clip(np.array([200, 40, 40]) + rng.integers(-30, 30, (30, 48, 64, 3)), 0, 255).astype(np.uint8)
        clips.append(folder / f"red{i}.mp4")
        write_video(video, clips[-1], 15.0)
    return clips


def action_item(page, action: str):
    return page.locator(f"#action-list li[data-action='{action}']")


def add_action(page, name: str) -> None:
    page.fill("#action-input", name)
    page.press("#action-input", "Enter")


def test_teach_mode_from_files_and_camera_then_serves_it_live(camera_browser, teach_server_url: str,
                                                              red_clips: list[Path], artifacts) -> None:
    page, errors = open_page(camera_browser, teach_server_url)
    page.wait_for_selector("#modes:not([hidden])")
    assert page.is_visible("#footer-teach")
    page.click("#mode-teach")
    assert page.is_visible("#teach") and page.is_hidden("#workspace")
    assert page.evaluate("window.location.hash") == "#teach"
    page.wait_for_function("() => document.querySelector('#teach-limits').textContent.includes('clips an action')")
    assert "untrained-test-model" in page.inner_text("#teach-base")
    assert "not trained on ImageNet" in page.inner_text("#teach-base")
    assert page.is_hidden("#keep-base-label")  # the base has no class means to keep its actions by
    assert page.is_disabled("#train-button")  # no action has clips yet

    # files: three clips of "red", one removed again
    add_action(page, "red")
    with page.expect_file_chooser() as chooser:
        action_item(page, "red").locator("button.add-files").click()
    chooser.value.set_files([str(path) for path in red_clips])
    page.wait_for_function("() => document.querySelectorAll(\"li[data-action='red'] .clip\").length === 3",
                           timeout=60_000)
    action_item(page, "red").locator(".clip-remove").first.click()
    page.wait_for_function("() => document.querySelectorAll(\"li[data-action='red'] .clip\").length === 2")

    # the camera: two recorded clips of "waving"
    add_action(page, "waving")
    assert page.is_disabled("#train-button")  # one action with clips is not enough
    for count in (1, 2):
        action_item(page, "waving").locator("button.record").click()
        page.wait_for_function("() => document.querySelectorAll(\"li[data-action='waving'] .clip\").length"
                               f" === {count}", timeout=60_000)
    assert page.is_hidden("#teach-error"), page.inner_text("#teach-error")
    # stopping the camera during the countdown cancels that clip, and keeps nothing
    action_item(page, "waving").locator("button.record").click()
    page.wait_for_function("() => document.querySelector('#teach-countdown').textContent === '3'")
    page.click("#teach-camera-toggle")
    page.wait_for_function("() => document.querySelector('#teach-error').textContent.includes('nothing was kept')")
    assert action_item(page, "waving").locator(".clip").count() == 2
    assert page.inner_text("#teach-camera-toggle") == "Start camera"
    page.click("#teach-camera-toggle")
    page.wait_for_function("() => document.querySelector('#teach-camera-label').textContent.startsWith('Ready')")

    page.fill("#teach-model-name", "page-taught")
    page.click("#train-button")
    page.wait_for_selector("#train-result:not([hidden]), #teach-error:not([hidden])", timeout=120_000)
    assert page.is_hidden("#teach-error"), page.inner_text("#teach-error")
    assert page.inner_text("#train-summary").startswith("Taught 2 actions from 4 clips")
    assert page.inner_text("#train-status") == "Done"
    page.wait_for_selector("#model-list li:has-text('page-taught')")
    page.screenshot(path=str(artifacts / "web-teach.png"), full_page=True)

    page.click("#use-model")
    page.wait_for_selector("#try-live:not([hidden])")
    assert page.inner_text("#model-name") == "page-taught"
    assert "Taught on this server" in page.inner_text("#model-notice")
    assert page.inner_text("#model-dataset").startswith("Knows 2 actions · taught on this server from 4 example")
    served = page.locator("#model-list li", has=page.locator(".served-badge"))
    assert served.count() == 1 and "page-taught" in served.inner_text()

    page.click("#try-live")
    assert page.is_visible("#workspace") and page.is_hidden("#teach")
    page.wait_for_function("() => document.querySelector('#camera-label').dataset.label", timeout=60_000)
    assert page.get_attribute("#camera-label", "data-label") == "waving"  # the camera shows what it was taught
    page.click("#camera-stop")
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_teach_mode_refuses_bad_input_plainly(page_on_teach_server) -> None:
    page = page_on_teach_server
    page.click("#mode-teach")
    page.wait_for_function("() => document.querySelector('#teach-limits').textContent.includes('clips an action')")
    add_action(page, "  ")
    assert "Type the action's name" in page.inner_text("#teach-error")
    add_action(page, "jump")
    for same in ("JUMP", "jumр", "ｊｕｍｐ"):  # the case, a Cyrillic р, fullwidth letters: one action on the server
        add_action(page, "  ")
        add_action(page, same)
        assert "already an action named “jump”" in page.inner_text("#teach-error"), same

    with page.expect_file_chooser() as chooser:
        action_item(page, "jump").locator("button.add-files").click()
    chooser.value.set_files([{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"},
                             {"name": "broken.mp4", "mimeType": "video/mp4", "buffer": os.urandom(4000)}])
    page.wait_for_function("() => document.querySelector('#teach-error').textContent.includes('broken.mp4')",
                           timeout=60_000)
    said = page.inner_text("#teach-error")
    assert "“notes.txt” is not a video file" in said and "broken.mp4:" in said
    assert action_item(page, "jump").locator(".clip").count() == 0  # nothing was kept

    add_action(page, "<b>")
    with page.expect_file_chooser() as chooser:
        action_item(page, "<b>").locator("button.add-files").click()
    chooser.value.set_files([{"name": "ok.mp4", "mimeType": "video/mp4", "buffer": b"\x00" * 100}])
    page.wait_for_function("() => document.querySelector('#teach-error').textContent.includes('characters')",
                           timeout=60_000)
    assert action_item(page, "<b>").count() == 0  # a name the server refuses is dropped
    action_item(page, "jump").locator("button.remove-action").click()
    assert action_item(page, "jump").count() == 0


@pytest.fixture
def page_on_teach_server(browser, teach_server_url: str):
    page, errors = open_page(browser, teach_server_url)
    page.wait_for_selector("#modes:not([hidden])")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_teach_mode_is_not_offered_without_a_data_folder(page) -> None:
    page.wait_for_timeout(500)
    assert page.is_hidden("#modes") and page.is_hidden("#footer-teach")
