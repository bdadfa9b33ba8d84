"""Request heads and bodies that are too big or too slow: 431 and 408, and the connection closed.

The protocol is tested on a real uvicorn server over loopback sockets with a small app (so the
timeouts can be short), and once against the model server process to show it is installed.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time

import pytest
import uvicorn

from tuneops.core.process import free_port
from workloads.serve.http_guard import GuardedHttpToolsProtocol
from workloads.serve.middleware import BodyLimit

LIMIT = 4096
TIMEOUT_S = 0.5


async def echo(scope, receive, send) -> None:
    """Answers every request with the size of its body."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def guarded():
    """A uvicorn server with the guarded protocol and the body limit, on a free port."""
    port = free_port("127.0.0.1")
    protocol = functools.partial(
        GuardedHttpToolsProtocol, max_head_bytes=LIMIT, read_timeout_s=TIMEOUT_S
    )
    app = BodyLimit(echo, max_bytes=1 << 20, read_timeout_s=TIMEOUT_S)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(5)


def exchange(port: int, pieces: list[bytes], gap: float = 0.0) -> tuple[bytes, float]:
    """Send ``pieces`` (``gap`` seconds apart), then read until the server closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    started = time.perf_counter()
    answer = b""
    try:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(gap)
        while chunk := sock.recv(65536):
            answer += chunk
    except (BrokenPipeError, ConnectionResetError):
        answer += sock.recv(65536) if answer == b"" else b""
    finally:
        sock.close()
    return answer, time.perf_counter() - started


def head(extra: bytes = b"") -> bytes:
    return b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"\r\n"


def test_a_head_within_the_limit_is_served(guarded):
    answer, _ = exchange(guarded, [head(b"X-Pad: " + b"a" * (LIMIT // 2) + b"\r\n")])
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_head_over_the_limit_is_431_however_it_arrives(guarded):
    big = b"X-Big: " + b"a" * (2 * LIMIT) + b"\r\n"
    whole, _ = exchange(guarded, [head(big)])
    assert whole.startswith(b"HTTP/1.1 431")
    assert b"limits.max_header_bytes" in whole
    # Streamed in a megabyte at a time, it is cut off at the limit, not buffered.
    sock = socket.create_connection(("127.0.0.1", guarded), timeout=5)
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: ")
    sent = 0
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(64):
            sock.sendall(b"a" * (1 << 20))
            sent += 1
            time.sleep(0.01)
    sock.close()
    assert sent < 64


def test_a_head_sent_too_slowly_is_408(guarded):
    pieces = [b"GET /x HTTP/1.1\r\n", b"Host: t\r\n", b"X-A: 1\r\n", b"X-B: 1\r\n"]
    answer, took = exchange(guarded, pieces, gap=TIMEOUT_S / 2)
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
    assert took < TIMEOUT_S * 4


def test_a_connection_that_sends_nothing_is_closed(guarded):
    answer, took = exchange(guarded, [])
    assert answer == b"" and TIMEOUT_S * 0.8 < took < TIMEOUT_S * 4


def test_a_body_sent_too_slowly_is_408(guarded):
    body = b"x" * 40
    start = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\n\r\n"
    pieces = [start] + [body[i : i + 4] for i in range(0, 40, 4)]
    answer, _ = exchange(guarded, pieces, gap=TIMEOUT_S / 4)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"limits.read_timeout_s" in answer


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (the test app always sends its Content-Length)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_keep_alive_waits_between_requests_and_times_each_head_afresh(guarded):
    sock = socket.create_connection(("127.0.0.1", guarded), timeout=5)
    try:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT_S * 2)  # idle between requests: uvicorn's keep-alive, not a head
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n3")
    finally:
        sock.close()


def test_the_model_server_refuses_a_huge_head_before_auth(server):
    answer, took = exchange(server.port, [head(b"X-Big: " + b"a" * 200_000 + b"\r\n")])
    assert answer.startswith(b"HTTP/1.1 431") and took < 1
