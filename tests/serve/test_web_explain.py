"""The page's explanation in real headless Chromium: under the answer, the strip of sampled moments
(thumbnails, bars as tall as their weights, a click seeks the video), the map over the video, and a
model file without maps answered with moments only and the reason. The screenshot is kept as
artifacts/web-explain.png."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets.synth import render_clip
from actionrec.testing.processes import serve_command
from actionrec.video.encode import write_video

pytestmark = pytest.mark.browser

LABELS = ["grow", "shrink", "brighten", "darken"]



@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "grow.mp4"
    write_video(render_clip("grow", np.random.default_rng(3), width=160, height=120, num_frames=75), path, 25)
    return path


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    folder = tmp_path_factory.mktemp("web-explain")
    model = make_untrained_model(folder / "model.onnx", labels=LABELS, num_frames=6, image_size=64,
                                 fitted_batch_norm=True)
    with serve_command([str(model), "--workers", "1"], folder / "server.log") as url:
        yield url + "/"



@pytest.fixture
def page(browser, server_url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url)
    page.wait_for_function("() => !['', '\u2026'].includes(document.querySelector('#model-name').textContent.trim())")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def upload(page, clip: Path) -> None:
    page.set_input_files("#file-input", str(clip))
    page.wait_for_selector("#state-result:not([hidden]), #state-error:not([hidden])", timeout=60_000)
    if page.is_visible("#state-error"):
        pytest.fail(f"the page showed an error: {page.inner_text('#state-error')}")


def test_the_answer_shows_its_moments_and_its_map(page, clip: Path, artifacts) -> None:
    upload(page, clip)
    assert page.is_visible("#why") and page.inner_text("#why-summary").strip()
    moments = page.locator("#moments .moment-button")
    assert moments.count() == 6
    weights = [float(w) for w in moments.evaluate_all("nodes => nodes.map(n => n.dataset.weight)")]
    heights = moments.evaluate_all("nodes => nodes.map(n => n.querySelector('.moment-bar').getBoundingClientRect()"
                                   ".height)")
    assert int(np.argmax(np.abs(weights))) == int(np.argmax(heights))  # the tallest bar: the heaviest moment
    assert page.is_visible("#map-overlay") and page.locator("#map-overlay .map-cell").count() == 2 * 3
    assert page.is_hidden("#why-note")
    page.wait_for_function("document.querySelectorAll('#moments canvas[data-drawn]').length === 6", timeout=20_000)

    page.wait_for_function("document.getElementById('video').readyState >= 1")
    last = moments.last
    time_s = float(last.get_attribute("data-time"))
    last.click()
    page.wait_for_function(f"Math.abs(document.getElementById('video').currentTime - {time_s}) < 0.05")
    overlay = page.locator("#map-overlay").bounding_box()
    video = page.locator("#video").bounding_box()
    assert overlay is not None and video is not None
    assert abs(overlay["width"] / overlay["height"] - 160 / 120) < 0.02  # over the picture, not the letterbox
    page.click("#map-toggle")
    assert page.is_hidden("#map-overlay")
    page.click("#map-toggle")
    page.screenshot(path=str(artifacts / "web-explain.png"), full_page=True)


def test_a_model_without_maps_shows_moments_and_says_why(page, clip: Path) -> None:
    def without_map(route) -> None:  # the answer a file exported before frame maps gets
        response = route.fetch(post_data=clip.read_bytes())  # Chromium does not hand over an upload's blob
        body = response.json()
        assert "explanation" in body, body
        body["explanation"]["map"], body["explanation"]["warnings"] = None, ["no_map"]
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/v1/predictions*", without_map)
    upload(page, clip)
    assert page.locator("#moments .moment-button").count() == 6
    assert page.is_hidden("#map-overlay") and page.is_hidden("#map-toggle-row")
    assert "no map" in page.inner_text("#why-note")
