"""The listening sockets that bound a server's open connections: past the limit a connection is
answered 503 and closed inside accept(), so a flood never holds more descriptors than the limit,
and a connection that closes gives its place back."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import socket

from actionrec.serve.protocol import ConnectionLimitingSocket, OpenConnections, listening_sockets


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass  # the request came after the refusal closed the connection: what was read stands
    return b"".join(chunks)


class WatchedListener(ConnectionLimitingSocket):
    """Counts, at every connection taken from the queue, the descriptors the server holds beyond
    the test's own client ends."""

    def _accept(self):  # type: ignore[override]
        self.most_held = max(getattr(self, "most_held", 0), open_descriptors() - self.baseline - self.clients_made)
        return super()._accept()


async def serve_and_flood(limit: int, clients: int) -> tuple[list[bytes], int, int]:
    """Serve on a limited socket under asyncio, open `clients` connections that each send a request
    and wait; the answers the refused ones read, how many the server took, and the most descriptors
    it held inside accept()."""
    loop = asyncio.get_running_loop()
    listener = WatchedListener(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.connections = OpenConnections(limit)
    listener.bind(("127.0.0.1", 0))
    server = await loop.create_server(asyncio.Protocol, sock=listener, backlog=128)
    port = listener.getsockname()[1]
    listener.baseline, listener.clients_made = open_descriptors(), 0
    connections = []
    for _ in range(clients):
        client = socket.create_connection(("127.0.0.1", port))
        listener.clients_made += 1
        client.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        connections.append(client)
        await asyncio.sleep(0)
    for _ in range(200):  # until the server has seen every connection
        await asyncio.sleep(0.01)
        if listener.connections.count == limit and not _waiting(listener):
            break
    refused = []
    for client in connections:
        client.settimeout(0.5)
        try:
            refused.append(read_all(client))
        except TimeoutError:
            pass  # taken: the protocol answers nothing and keeps it open
    taken = listener.connections.count
    for client in connections:
        client.close()
    for _ in range(200):  # the server sees each close and gives the place back
        await asyncio.sleep(0.01)
        if listener.connections.count == 0:
            break
    assert listener.connections.count == 0
    again = socket.create_connection(("127.0.0.1", port))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if listener.connections.count == 1:  # a place freed is taken again
            break
    assert listener.connections.count == 1
    again.close()
    server.close()
    await server.wait_closed()
    return refused, taken, listener.most_held


def _waiting(listener: socket.socket) -> bool:
    """Whether a connection waits in the listen queue."""
    return bool(select.select([listener], [], [], 0)[0])


def test_a_flood_past_the_limit_is_refused_with_503_and_holds_no_descriptors():
    refused, taken, most_held = asyncio.run(serve_and_flood(limit=5, clients=40))
    assert taken == 5
    assert len(refused) == 35
    for answer in refused:
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 2" in head
        assert json.loads(body)["reason"] == "too_many_connections"
    assert most_held <= 5  # no more than the taken ones are ever open when the next is accepted


def test_the_limit_is_shared_by_every_address_the_server_listens_on():
    listeners = listening_sockets("", 0, 2)  # every IPv4 and IPv6 address where the host has both
    for listener in listeners:
        listener.listen(8)
    clients, taken = [], []
    for n in range(3):
        listener = listeners[n % len(listeners)]
        loopback = "::1" if listener.family == socket.AF_INET6 else "127.0.0.1"
        clients.append(socket.create_connection((loopback, listener.getsockname()[1])))
        listener.setblocking(False)
        try:
            taken.append(listener.accept()[0])
        except BlockingIOError:
            pass  # refused
    assert len(taken) == 2 and listeners[0].connections.count == 2
    for sock in taken + clients + listeners:
        sock.close()


def test_a_connection_collected_without_close_gives_its_place_back():
    [listener] = listening_sockets("127.0.0.1", 0, 1)
    listener.listen(8)
    client = socket.create_connection(listener.getsockname())
    connection, _ = listener.accept()
    assert listener.connections.count == 1
    copy = connection.dup()
    del connection
    gc.collect()
    assert listener.connections.count == 0
    copy.close()  # a dup() holds no place of its own
    assert listener.connections.count == 0
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
