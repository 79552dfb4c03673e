"""The listening socket that bounds a server's open connections: past the limit a connection is
answered 503 and closed inside accept(), so a flood never holds more descriptors than the limit,
and a connection that closes gives its place back."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket

from actionrec.serve.protocol import ConnectionLimitingSocket, listening_sockets


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def serve_and_flood(limit: int, clients: int) -> tuple[list[bytes], int, int]:
    """Serve on a limited socket under asyncio, open `clients` connections that send a request and
    wait; answers the refused ones read, the server's accepted count, and the most descriptors open."""
    loop = asyncio.get_running_loop()
    [listener] = listening_sockets("127.0.0.1", 0, limit)
    server = await loop.create_server(asyncio.Protocol, sock=listener, backlog=128)
    port = listener.getsockname()[1]
    baseline = open_descriptors()
    most = baseline
    connections = []
    for _ in range(clients):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        connections.append(client)
        await asyncio.sleep(0)
        most = max(most, open_descriptors())
    for _ in range(20):
        await asyncio.sleep(0.01)
        most = max(most, open_descriptors())
    refused = []
    for client in connections:
        client.settimeout(0.2)
        try:
            refused.append(read_all(client))
        except TimeoutError:
            pass  # accepted: the protocol answers nothing and keeps it open
    accepted = listener.open_connections
    for client in connections:
        client.close()
    for _ in range(50):  # the server sees each close and gives the place back
        await asyncio.sleep(0.01)
        if listener.open_connections == 0:
            break
    assert listener.open_connections == 0
    again = socket.create_connection(("127.0.0.1", port))
    await asyncio.sleep(0.05)
    assert listener.open_connections == 1  # a place freed is taken again
    again.close()
    server.close()
    await server.wait_closed()
    # most - baseline: the client ends (one per connection) plus what the server holds
    return refused, accepted, most - baseline - clients


def test_a_flood_past_the_limit_is_refused_with_503_and_holds_no_descriptors():
    refused, accepted, held_by_server = asyncio.run(serve_and_flood(limit=5, clients=40))
    assert accepted == 5
    assert len(refused) == 35
    for answer in refused:
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 2" in head
        assert json.loads(body)["reason"] == "too_many_connections"
    assert held_by_server <= 5 + 1  # the accepted ones, and a refused one inside accept() at most


def test_a_connection_collected_without_close_gives_its_place_back():
    listener = ConnectionLimitingSocket(socket.AF_INET, max_connections=1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    client = socket.create_connection(listener.getsockname())
    connection, _ = listener.accept()
    assert listener.open_connections == 1
    del connection
    gc.collect()
    assert listener.open_connections == 0
    client.close()
    listener.close()


def test_a_port_in_use_is_an_error_and_leaves_nothing_open():
    [first] = listening_sockets("127.0.0.1", 0, 4)
    first.listen(1)
    before = open_descriptors()
    try:
        listening_sockets("127.0.0.1", first.getsockname()[1], 4)
    except OSError:
        pass
    else:
        raise AssertionError("binding a port in use should fail")
    finally:
        first.close()
    assert open_descriptors() == before - 1
