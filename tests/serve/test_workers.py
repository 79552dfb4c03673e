"""The decode workers' end of the pipe to the server: a chunk of decoded frames goes in one write."""

from __future__ import annotations

import multiprocessing
import os
import socket
from pathlib import Path

import pytest

from actionrec.serve.workers import _widen_send_buffer

CHUNK_BYTES = 4 * 224 * 224 * 3  # a clip's chunk: four 224 px frames


def test_a_worker_writes_a_chunk_of_frames_without_waiting_for_the_server_to_read():
    limit = Path("/proc/sys/net/core/wmem_max")
    if not limit.is_file() or int(limit.read_text()) < CHUNK_BYTES:
        pytest.skip("this kernel allows no send buffer that holds a chunk (net.core.wmem_max)")
    server_end, worker_end = multiprocessing.Pipe()
    _widen_send_buffer(worker_end)
    with socket.socket(fileno=os.dup(worker_end.fileno())) as sock:
        sock.setblocking(False)
        assert sock.send(bytes(CHUNK_BYTES)) == CHUNK_BYTES  # all of it, none read yet
    server_end.close()
    worker_end.close()
