"""Evaluating an exported model file on a dataset's validation clips, without torch.

The clips are read as a prediction reads them (segment centres) and run through ONNX Runtime, so
what this measures is what `serve` and `predict` answer. Two files evaluated on the same clips
(an fp32 model and its int8 copy) give each one's accuracy and how often they agree.
`measure_unknown_rule` measures, the same way, a model's threshold for "none of these".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from actionrec.datasets import DATASET_LIMITS, Sample, evenly, load_dataset
from actionrec.errors import ModelFileError, VideoError
from actionrec.evaluation.scores import compute_metrics
from actionrec.modelfile.unknown import UnknownRule, calibrate, class_means, unit
from actionrec.runtime.recognizer import Recognizer
from actionrec.video import read_clip

JOINED_FPS = 25
CLASS_MEAN_CLIPS = 16  # training clips per class decoded for its mean where no cached features are left


@dataclass
class Clips:
    """Validation clips, decoded once for every model with the same frames and size."""

    samples: list[Sample]
    frames: list[np.ndarray]
    targets: np.ndarray  # each clip's class, as an index into `labels`
    labels: list[str]
    failed: dict[Path, str]


def validation_clips(data_dir: str | os.PathLike, recognizer: Recognizer, *, dataset: str = "folder",
                     split: int = 1, val_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                     progress: Callable[[int, int], None] | None = None, training: bool = False) -> Clips:
    """Decode (up to `limit`, spread over the classes) validation clips of a dataset as the model
    reads them; with `training`, its training clips instead. The dataset's split settings must be
    those the model was trained with."""
    split_set = load_dataset(data_dir, kind=dataset, split=split, val_fraction=val_fraction,  # type: ignore[arg-type]
                             seed=seed)
    missing = [name for name in split_set.classes if name not in recognizer.labels]
    if missing:
        raise ModelFileError(f"{recognizer.model_path}: the model has no class {missing[0]!r} of {data_dir} "
                             f"({len(missing)} of the dataset's classes are not among its labels).")
    samples = evenly(split_set.train if training else split_set.val, limit)
    kept, frames, failed = [], [], {}
    for done, sample in enumerate(samples, 1):
        try:
            frames.append(read_clip(sample.path, recognizer.spec, limits=DATASET_LIMITS).frames)
            kept.append(sample)
        except VideoError as exc:
            failed[sample.path] = str(exc)
        if progress:
            progress(done, len(samples))
    targets = np.array([recognizer.labels.index(split_set.classes[s.label]) for s in kept], dtype=np.int64)
    return Clips(kept, frames, targets, list(recognizer.labels), failed)


def class_probabilities(recognizer: Recognizer, clips: Clips, batch_size: int = 8) -> np.ndarray:
    """(clips, classes) probabilities from `recognizer` (whose labels must be `clips.labels`)."""
    if list(recognizer.labels) != clips.labels:
        raise ModelFileError(f"{recognizer.model_path}: its labels differ from the model the clips were read for.")
    if not clips.frames:
        return np.zeros((0, len(clips.labels)), np.float32)
    return np.concatenate([recognizer.classify(np.stack(clips.frames[i : i + batch_size]))
                           for i in range(0, len(clips.frames), batch_size)])


def evaluate_files(models: list[Recognizer], clips: Clips) -> dict[str, Any]:
    """Metrics of each model on the same clips and, for two or more, how often each agrees with
    the first on the top class, and on how many clips it is wrong where the first is right
    (`lost_vs_first`) and the other way round (`gained_vs_first`)."""
    results: dict[str, Any] = {"num_clips": len(clips.samples), "failed": {str(p): e for p, e in clips.failed.items()},
                               "models": []}
    first: np.ndarray | None = None
    for model in models:
        probs = class_probabilities(model, clips)
        metrics = compute_metrics(probs, clips.targets, clips.labels) if len(probs) else {}
        entry = {"model": str(model.model_path), "top1": metrics.get("top1"), "top5": metrics.get("top5"),
                 "mean_class_accuracy": metrics.get("mean_class_accuracy"), "metrics": metrics}
        if first is None:
            first = probs.argmax(-1)
        else:
            entry["agreement_with_first"] = float((probs.argmax(-1) == first).mean()) if len(probs) else None
            right, first_right = probs.argmax(-1) == clips.targets, first == clips.targets
            entry["lost_vs_first"] = int((first_right & ~right).sum())
            entry["gained_vs_first"] = int((right & ~first_right).sum())
        results["models"].append(entry)
    return results


def clip_evidence(recognizer: Recognizer, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, (T, F) frame features) of one (T, S, S, 3) clip, as a prediction computes them."""
    features = recognizer.encode(np.ascontiguousarray(frames))
    return recognizer.head(features[None])[0], features


def measure_unknown_rule(recognizer: Recognizer, data_dir: str | os.PathLike, *, dataset: str = "folder",
                         split: int = 1, val_fraction: float = 0.2, seed: int = 0, limit: int | None = 500,
                         cached_features: Callable[[Path], np.ndarray | None] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> UnknownRule:
    """The "none of these" rule of a model trained on `data_dir` with these split settings: class
    means from the features of its training clips, and the threshold that puts `KNOWN_FLAGGED` of
    (up to `limit`) validation clips under it. Clips stream: one in memory at a time.

    `cached_features` gives a training clip's (T, F) features where training kept them (a frozen
    backbone's, at segment centres: what the encoder gives), so that every training clip counts;
    otherwise up to `CLASS_MEAN_CLIPS` clips of each class are decoded (the means are then less
    sure: measured, 69% of unknown clips flagged with means of 16 clips against 90% with 24)."""
    split_set = load_dataset(data_dir, kind=dataset, split=split, val_fraction=val_fraction,  # type: ignore[arg-type]
                             seed=seed)
    missing = [name for name in split_set.classes if name not in recognizer.labels]
    if missing:
        raise ModelFileError(f"{recognizer.model_path}: the model has no class {missing[0]!r} of {data_dir}.")
    by_class: dict[int, list[Sample]] = {}
    for sample in split_set.train:
        by_class.setdefault(recognizer.labels.index(split_set.classes[sample.label]), []).append(sample)
    lacking = [name for index, name in enumerate(recognizer.labels) if index not in by_class]
    if lacking:
        raise ModelFileError(f"{recognizer.model_path}: {data_dir} has no training clips of "
                             f"{', '.join(lacking[:3])}{' and others' if len(lacking) > 3 else ''}, which the "
                             "model knows: measure its unknown threshold on the dataset it was trained on.")
    # Each cached clip pooled at once to its unit mean feature (which is all `class_means` keeps of it).
    cached = {sample.path: unit(features.mean(0))[None] for sample in split_set.train
              if cached_features is not None and (features := cached_features(sample.path)) is not None}
    means_from = {label: [s for s in samples if s.path in cached] or list(evenly(samples, CLASS_MEAN_CLIPS))
                  for label, samples in by_class.items()}
    validation = list(evenly(split_set.val, limit))
    total, done = sum(map(len, means_from.values())) + len(validation), 0

    def evidence(samples: list[Sample]):
        nonlocal done
        for sample in samples:
            done += 1
            if sample.path in cached:
                yield None, cached[sample.path]
                continue
            try:
                frames = read_clip(sample.path, recognizer.spec, limits=DATASET_LIMITS).frames
            except VideoError:
                continue  # training reported it
            finally:
                if progress:
                    progress(done, total)
            yield clip_evidence(recognizer, frames)

    means = class_means([[features for _, features in evidence(means_from[label])] or
                         [np.zeros((1, recognizer.card.num_features), np.float32)]
                         for label in range(len(recognizer.labels))])
    cached.clear()  # validation clips are read as a prediction reads them
    return calibrate(means, evidence(validation), f"validation clips of {Path(data_dir).name}")


def rule_on_clips(recognizer: Recognizer, means: np.ndarray, clips: Clips, calibrated_on: str) -> UnknownRule:
    """The feature-similarity rule for `recognizer` with these class `means`, its threshold measured
    on decoded `clips` (for the int8 copy of a model, on the clips its fp32 original was compared on)."""
    return calibrate(means, (clip_evidence(recognizer, frames) for frames in clips.frames), calibrated_on)


def unknown_flags(recognizer: Recognizer, known: Clips, unknown: list[np.ndarray]) -> dict[str, Any]:
    """How many clips of known actions (`known`, validation clips) and of actions the model was not
    taught (`unknown`, decoded clips) its rule flags, and how many a fixed 0.5 on the top probability
    (the rule of files without one) would; with how well each score separates the two at any
    threshold (the area under the ROC curve: 1 perfect, 0.5 chance)."""
    def scores(frames_list: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
        values, confidences, flagged = [], [], []
        for frames in frames_list:
            probs, features = clip_evidence(recognizer, frames)
            check = recognizer.rank(probs, 1, features)[1]
            values.append(check.value)
            confidences.append(float(probs.max()))
            flagged.append(check.unknown)
        return np.array(values), np.array(confidences), flagged

    known_values, known_confidences, known_flagged = scores(known.frames)
    unknown_values, unknown_confidences, unknown_flagged = scores(unknown)
    share = lambda values: round(float(np.mean(values)), 4) if len(values) else None  # noqa: E731
    return {"rule": recognizer.unknown_rule.describe(), "known_clips": len(known_flagged),
            "unknown_clips": len(unknown_flagged), "known_flagged": share(known_flagged),
            "unknown_flagged": share(unknown_flagged), "auroc": _auroc(known_values, unknown_values),
            "fixed_0.5": {"known_flagged": share(known_confidences < 0.5),
                          "unknown_flagged": share(unknown_confidences < 0.5),
                          "auroc": _auroc(known_confidences, unknown_confidences)}}


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float | None:
    """The chance that a known clip scores above an unknown one (ties count half)."""
    if not len(known) or not len(unknown):
        return None
    above = (known[:, None] > unknown[None]).mean() + 0.5 * (known[:, None] == unknown[None]).mean()
    return round(float(above), 4)


def read_clips(videos: list[Path], recognizer: Recognizer) -> list[np.ndarray]:
    """Clips of `videos` as a prediction reads them; unreadable ones left out."""
    clips = []
    for video in videos:
        try:
            clips.append(read_clip(video, recognizer.spec, limits=DATASET_LIMITS).frames)
        except VideoError:
            continue
    return clips


def joined_timelines(recognizer: Recognizer, clips: Clips, folder: Path, *, count: int = 8, per_video: int = 4,
                     seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Timelines of `count` videos, each `per_video` validation clips of different actions joined
    end to end (written to `folder`): how much of the time each labels with the right action and how
    far each boundary between clips lies from the nearest boundary of the timeline; beside them,
    the same for windows alone, each owning the time nearest its centre (the rule before)."""
    import av

    from actionrec.runtime.segments import merge_windows
    from actionrec.video import stream_prediction_frames
    from actionrec.video.encode import write_video

    rng = np.random.default_rng(seed)
    by_label: dict[int, list[Sample]] = {}
    for sample, target in zip(clips.samples, clips.targets):
        by_label.setdefault(int(target), []).append(sample)
    per_video = min(per_video, len(by_label))
    if per_video < 2:
        raise ValueError("timelines of joined clips need readable validation clips of at least 2 actions.")
    results: dict[str, list] = {"evidence": [], "windows": []}
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        frames: list[np.ndarray] = []
        truth, start = [], 0.0
        for label in rng.permutation(sorted(by_label))[:per_video]:
            sample = by_label[int(label)][rng.integers(len(by_label[int(label)]))]
            with av.open(str(sample.path)) as container:
                clip = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            if frames and clip[0].shape != frames[0].shape:
                continue  # one size per joined video
            frames += clip
            # Every clip's frames are played at JOINED_FPS, whatever their own rate: its span is known exactly.
            truth.append((clips.labels[int(label)], start, start + len(clip) / JOINED_FPS))
            start += len(clip) / JOINED_FPS
        video = folder / f"joined_{number:02d}.mp4"
        write_video(np.stack(frames), video, fps=JOINED_FPS)
        builder, done = recognizer.read_stream(
            stream_prediction_frames(video, recognizer.spec, recognizer.limits, recognizer.timeline))
        prediction = builder.finish(done, 1)
        windows = merge_windows([(a, b) for _, a, b in builder.plan.windows], np.concatenate(builder.window_probs),
                                recognizer.labels, done.info.duration_s) \
            if builder.window_probs else prediction.segments
        for name, segments in (("evidence", prediction.segments), ("windows", windows)):
            results[name].append(_timeline_score(segments, truth))
        if progress:
            progress(number + 1, count)
    summary = {}
    for name, scores in results.items():
        errors = [error for _, video_errors in scores for error in video_errors]
        summary[name] = {"time_right": round(float(np.mean([right for right, _ in scores])), 4),
                         "worst_video_time_right": round(float(min(right for right, _ in scores)), 4),
                         "boundary_error_median_s": round(float(np.median(errors)), 3) if errors else None,
                         "boundary_error_max_s": round(float(max(errors)), 3) if errors else None,
                         "boundaries_within_0.5s":
                             round(float(np.mean(np.array(errors) <= 0.5)), 4) if errors else None}
    return {"videos": count, "clips_per_video": per_video, **summary}


def _timeline_score(segments, truth: list[tuple[str, float, float]]) -> tuple[float, list[float]]:
    """(share of the time labelled right, each true boundary's distance to the nearest found one)."""
    moments = np.arange(0.0, truth[-1][2], 0.04)
    found = [next((s.action for s in segments if s.start_s <= t < s.end_s), segments[-1].action) for t in moments]
    actual = [next((name for name, a, b in truth if a <= t < b), truth[-1][0]) for t in moments]
    boundaries = [s.start_s for s in segments[1:]]
    errors = [min((abs(b - a) for b in boundaries), default=truth[-1][2]) for _, a, _ in truth[1:]]
    return float(np.mean([f == a for f, a in zip(found, actual)])), errors
