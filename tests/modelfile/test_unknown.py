""""None of these": the rule a model file carries, how it is measured, and who uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actionrec.errors import ModelFileError
from actionrec.modelfile.unknown import (
    FEATURE_SIMILARITY,
    MAX_PROBABILITY,
    SIMILARITY_AND_CONFIDENCE,
    UnknownCheck,
    UnknownRule,
    calibrate,
    class_means,
    feature_similarity,
    unsure_warning,
)


def clips_near(direction: np.ndarray, count: int, rng: np.random.Generator, spread: float = 0.3) -> list[np.ndarray]:
    return [direction + spread * rng.standard_normal((4, len(direction))) for _ in range(count)]


def test_clips_unlike_every_class_score_low_and_the_threshold_flags_five_percent_of_known_ones():
    rng = np.random.default_rng(0)
    directions = np.eye(8)[:3] * 5
    means = class_means([clips_near(d, 20, rng) for d in directions])
    assert means.shape == (3, 8) and np.allclose(np.linalg.norm(means, axis=1), 1)
    known = [(None, clip) for d in directions for clip in clips_near(d, 40, rng)]
    rule = calibrate(means, known, "validation clips of test")
    assert rule.score == FEATURE_SIMILARITY and rule.calibrated_on == "120 validation clips of test"
    assert 0.03 <= rule.known_flagged <= 0.07
    unknown = clips_near(np.eye(8)[5] * 5, 40, rng)
    assert np.mean([rule.check(None, clip).unknown for clip in unknown]) == 1.0
    assert feature_similarity(known[0][1], means) > rule.threshold > feature_similarity(unknown[0], means)


def test_low_confidence_is_evidence_too():
    """With probabilities, export's rule adds the similarity and the confidence, each in standard
    deviations over the known clips: a clip that looks like known footage but gives no action much
    probability (four known actions side by side) scores low; known clips flagged stay near 5%."""
    rng = np.random.default_rng(2)
    directions = np.eye(8)[:3] * 5
    means = class_means([clips_near(d, 20, rng) for d in directions])
    known = [(np.array([rng.uniform(0.6, 0.99), 0.0, 0.0]), clip)
             for d in directions for clip in clips_near(d, 40, rng)]
    rule = calibrate(means, known, "validation clips of test")
    assert rule.score == SIMILARITY_AND_CONFIDENCE and rule.has_training_means
    assert 0.03 <= rule.known_flagged <= 0.07
    like_known = known[0][1]
    assert not rule.check(np.array([0.95, 0.03, 0.02]), like_known).unknown
    unsure = rule.check(np.array([0.4, 0.3, 0.3]), like_known)
    assert unsure.unknown and "no action stands out" in unsure_warning(unsure, 0.4, 3)
    again = UnknownRule.from_dict(rule.to_dict(), 3, 8)
    assert again.scales == rule.scales and again.value(np.array([0.4, 0.3, 0.3]), like_known) == pytest.approx(
        rule.value(np.array([0.4, 0.3, 0.3]), like_known))
    for damaged in ({"similarity": [0.5, 0.0], "confidence": [0.9, 0.1]}, {"similarity": [0.5, 0.1]}, "x"):
        with pytest.raises(ValueError, match="scales|standard deviation"):
            UnknownRule.from_dict(rule.to_dict() | {"scales": damaged}, 3, 8)


def test_a_rule_travels_in_the_card_and_damage_is_named():
    from actionrec.modelfile.card import ModelCard

    rng = np.random.default_rng(1)
    rule = UnknownRule(FEATURE_SIMILARITY, 0.61, class_means([clips_near(np.ones(6), 3, rng)] * 2),
                       known_flagged=0.05, calibrated_on="40 validation clips of x")
    card = ModelCard(name="m", version="1", labels=["a", "b"], num_frames=4, image_size=32, num_features=6,
                     unknown=rule.to_dict())
    again = ModelCard.from_json(card.to_json(), "m.onnx").unknown_rule
    assert again.threshold == 0.61 and again.calibrated_on == rule.calibrated_on
    assert np.allclose(again.means, rule.means, atol=1e-3)  # stored as float16
    damaged = card.to_dict() | {"unknown": rule.to_dict() | {"threshold": "high"}}
    with pytest.raises(ModelFileError, match="m.onnx.*'unknown'"):
        ModelCard.from_dict(damaged, "m.onnx")
    three_labels = card.to_dict() | {"labels": ["a", "b", "c"]}
    with pytest.raises(ModelFileError, match="class means"):
        ModelCard.from_dict(three_labels, "m.onnx")


def test_the_warning_says_why_in_words():
    check = UnknownCheck(score=FEATURE_SIMILARITY, value=0.52, threshold=0.74, unknown=True)
    text = unsure_warning(check, 0.91, 6)
    assert text.startswith("The model is unsure") and "0.52" in text and "6 actions" in text
    by_confidence = unsure_warning(UnknownCheck(MAX_PROBABILITY, 0.3, 0.5, True), 0.3, 4)
    assert "30% confidence, under 50%" in by_confidence


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained model and a copy whose card carries a feature-similarity rule."""
    pytest.importorskip("torch")
    from actionrec.modelfile.card import update_card
    from actionrec.testing import make_untrained_model

    root = tmp_path_factory.mktemp("unknown")
    plain = make_untrained_model(root / "plain.onnx", fitted_batch_norm=True)
    calibrated = root / "calibrated.onnx"
    calibrated.write_bytes(plain.read_bytes())
    from actionrec.runtime.recognizer import Recognizer

    features = Recognizer(plain).encode(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), np.uint8))
    means = class_means([[features]] * 4)
    update_card(calibrated, unknown=UnknownRule(FEATURE_SIMILARITY, 2.0, means, 0.05, "4 clips").to_dict())
    return plain, calibrated


def test_the_recognizer_answers_with_the_rule_its_file_carries(calibrated_model, numbered_clip):
    from actionrec.runtime.recognizer import Recognizer

    plain, calibrated = calibrated_model
    answer = Recognizer(plain).predict(numbered_clip)  # no rule in the file: confidence under 0.5, as always
    assert answer.unknown_check.score == MAX_PROBABILITY and answer.unknown_check.threshold == 0.5
    recognizer = Recognizer(calibrated)
    assert recognizer.describe()["unknown"]["score"] == FEATURE_SIMILARITY
    assert recognizer.describe()["uncertain_below"] is None
    answer = recognizer.predict(numbered_clip)  # a similarity can never reach 2.0
    assert answer.uncertain and answer.unknown_check.score == FEATURE_SIMILARITY
    assert answer.unknown_check.value <= 1.0
    overridden = Recognizer(calibrated, uncertain_below=0.0).predict(numbered_clip)  # a threshold by hand wins
    assert not overridden.uncertain and overridden.unknown_check == UnknownCheck(
        score=MAX_PROBABILITY, value=overridden.confidence, threshold=0.0, unknown=False)


def test_the_api_carries_the_check_and_the_warning(calibrated_model, numbered_clip):
    from fastapi.testclient import TestClient

    from actionrec.serve.app import create_app
    from actionrec.serve.settings import ServerSettings

    app = create_app(ServerSettings(model_path=calibrated_model[1], workers=1))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = numbered_clip.read_bytes()
        answer = client.post("/v1/predictions", content=body, headers={"Content-Type": "video/mp4"}).json()
        assert answer["uncertain"] and answer["unknown_check"]["score"] == FEATURE_SIMILARITY
        assert any(text.startswith("The model is unsure: the video looks unlike") for text in answer["warnings"])
        assert client.get("/v1/model").json()["unknown"]["threshold"] == 2.0
        assert set(client.post("/", content=body, headers={"Content-Type": "video/mp4"}).json()) == {
            "action", "confidence", "message"}  # the original contract, unchanged
