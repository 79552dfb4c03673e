"""A decode function that fails on purpose, for the server's crash-containment tests.

It runs in the server's decode worker processes, which import it by name: so it lives in a
module of its own rather than in a test file.
"""

import os
import signal
import time

from actionrec.inference import decode_video


def decode_with_faults(source, spec, limits, **options):
    if source == b"CRASH":
        os.kill(os.getpid(), signal.SIGSEGV)
    if source == b"EXIT":
        os._exit(3)
    if source == b"HANG":
        time.sleep(3600)
    if source.startswith(b"SLOW"):
        time.sleep(1.0)
        source = source[4:]
    return decode_video(source, spec, limits, **options)
