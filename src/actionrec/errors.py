"""Every error this package raises on purpose, each with a message a user can act on.

Problems with an input video are `VideoError`s and carry a short machine-readable `reason`; the
server turns them into 422 answers and `actionrec predict --json` prints the same codes.
"""

from __future__ import annotations


class ActionrecError(Exception):
    """Base class of the errors this package raises on purpose."""


# --------------------------------------------------------------------------- videos


class VideoError(ActionrecError, ValueError):
    """The video cannot be used. `reason` is a short machine-readable code."""

    reason, status = "invalid_video", 422


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


class NotAnImageError(VideoError):
    reason = "not_an_image"


# --------------------------------------------------------------------------- regions


class RegionsError(ActionrecError, ValueError):
    """A `--regions` SPEC (or the server's `regions` field) that cannot be used: it does not parse,
    a box lies outside the frame or has no size, there are too many regions, or a detector file is
    not a detector of the documented layout. Raised before the video is decoded."""

    reason, status = "bad_regions", 422


class DetectorUnavailableError(RegionsError):
    """`people` was asked for where its optional package (OpenCV, the `people` extra) is missing."""

    reason, status = "people_unavailable", 422


# --------------------------------------------------------------------------- model files


class ModelFileError(ActionrecError):
    """A model file is missing, unreadable or lacks the metadata this package writes."""


# --------------------------------------------------------------------------- datasets


class DatasetError(ActionrecError, ValueError):
    """The dataset cannot be used as it is: the message names the path, the problem and the fix."""


class DownloadError(ActionrecError):
    """A file could not be downloaded, or what arrived is not the expected file."""


class HostUnreachableError(DownloadError):
    """No connection to the server at all: offline, blocked, or the server is down."""


class ExtractionError(ActionrecError):
    """An archive could not be unpacked: a missing tool, a damaged archive or a full disk."""


# --------------------------------------------------------------------------- training and export


class BackboneWeightsError(ActionrecError):
    """The backbone weights could not be obtained or do not fit."""


class TrainingError(ActionrecError):
    """A training or evaluation run cannot go on: bad settings, no usable clips, a foreign run folder."""


class ExportError(ActionrecError):
    """The exported model does not reproduce the trained one, so it was not written."""


# --------------------------------------------------------------------------- serving
#
# Each carries the `reason` code the server puts beside `detail` in its answer, and the HTTP
# `status` it answers with (a VideoError: 422, the file's fault); metrics count failures by reason.


class DecodeCrashed(ActionrecError):
    """The worker process died while decoding: the file made FFmpeg crash (a segfault, an abort)."""

    reason, status = "decoder_crashed", 422


class DecodeFailed(ActionrecError):
    """Decoding raised an error that is not a known problem of the video; the worker lives on."""

    reason, status = "decoder_error", 422


class WorkerLost(ActionrecError):
    """The worker process was stopped from outside (killed, or the server shutting down), not by the
    file: the request may be sent again."""

    reason, status = "worker_lost", 503


class DecodeTimedOut(ActionrecError):
    """The worker took longer than the per-upload time limit."""

    reason, status = "decode_timeout", 422


class DecodersBusy(ActionrecError):
    """No decode worker became free in time."""

    reason, status = "busy", 503


class ServerBusy(ActionrecError):
    """As many requests of a kind as the server allows are already in progress."""

    reason, status = "busy", 503


class InferenceFailed(ActionrecError):
    """The model failed on frames that decoded fine: a server fault, not the upload's."""

    reason, status = "internal_error", 500


class RequestError(ActionrecError):
    """An HTTP request that cannot be taken as it is: `status` is the status it gets, `reason` the
    code beside the message, `headers` any the answer needs (WWW-Authenticate, Retry-After)."""

    def __init__(self, status: int, detail: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.headers = headers


class UploadError(RequestError):
    """An upload that cannot be taken: empty, cut off, too large, too slow, not a video type."""
