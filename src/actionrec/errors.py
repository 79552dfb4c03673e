"""Errors a user can act on. Every problem with an input video is a `VideoError`."""

from __future__ import annotations


class ActionrecError(Exception):
    """Base class of the errors this package raises on purpose."""


class VideoError(ActionrecError, ValueError):
    """The video cannot be used. `reason` is a short machine-readable code."""

    reason = "invalid_video"


class VideoNotFoundError(VideoError):
    reason = "not_found"


class EmptyVideoError(VideoError):
    reason = "empty"


class NotAVideoError(VideoError):
    reason = "not_a_video"


class NoVideoStreamError(VideoError):
    reason = "no_video_stream"


class UndecodableVideoError(VideoError):
    reason = "undecodable"


class FrameTooLargeError(VideoError):
    reason = "frame_too_large"


class VideoTooLongError(VideoError):
    reason = "too_long"


class ModelFileError(ActionrecError):
    """A model file is missing, unreadable or lacks the metadata this package writes."""
