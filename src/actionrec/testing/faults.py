"""Decode functions that fail on purpose, for the crash-containment tests of the server and of
training's decoding.

They run in worker processes, which import them by name: so they live in a module of the package
rather than in a test file. The server hands workers the path of the upload.
"""

import os
import signal
import time

from actionrec.video import stream_prediction_frames


def decode_with_faults(source, spec, limits, timeline=None, **options):
    with open(source, "rb") as upload:
        start = upload.read(5)
    if start == b"CRASH":
        os.kill(os.getpid(), signal.SIGSEGV)
    if start == b"EXIT":
        os._exit(3)
    if start == b"HANG":
        time.sleep(3600)
    if start.startswith(b"SLOW"):
        time.sleep(1.0)
        with open(source, "rb") as upload:
            source = upload.read()[4:]
    return stream_prediction_frames(source, spec, limits, timeline, **options)


def decode_with_a_bug(source, spec, limits, timeline=None, **options):
    """Decoding that fails the way a bug in the decode code would: not the video's fault."""
    with open(source, "rb") as upload:
        if upload.read(3) == b"BUG":
            raise AttributeError("'NoneType' object has no attribute 'width'")
    return decode_with_faults(source, spec, limits, timeline, **options)


class DecoderThatCrashes:
    """Training's view decoder, except that a file starting with CRASH kills the process decoding it
    (as a segfault inside FFmpeg would)."""

    def __init__(self, decode):
        self.decode = decode

    def __call__(self, video):
        with open(video, "rb") as file:
            if file.read(5) == b"CRASH":
                os.kill(os.getpid(), signal.SIGSEGV)
        return self.decode(video)
