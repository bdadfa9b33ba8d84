"""Limits on how a request head arrives, below the ASGI app (uvicorn's httptools protocol).

uvicorn buffers a request head of any size and waits for it without end: one client sending a
256 MB header grew the server by 340 MB, and a connection that sends a byte now and then, or
nothing at all, is held open forever (a few thousand of them take every file descriptor).
``GuardedHttpToolsProtocol`` answers 431 once a head passes ``limits.max_header_bytes`` and 408
when a head is not complete ``limits.read_timeout_s`` after its first byte; either way the
connection is closed. A new connection that sends nothing in that time is closed too (between
requests, uvicorn's keep-alive timeout does the same). The body has its limits in
``middleware.BodyLimit``. ``HostModelServer`` installs it on KServe's uvicorn config.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline on every request head."""

    def __init__(self, *args: Any, max_head_bytes: int, read_timeout_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_head_bytes = max_head_bytes
        self.read_timeout_s = read_timeout_s
        self._head_bytes = 0
        self._in_head = True
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._start_head_timer()
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, f"request head over {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        # Exact, however the head was split into reads (the count above sees whole reads).
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse(431, f"request head over {self.max_head_bytes} bytes")
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # its head is complete already
        super().on_response_complete()
        # The next head on this connection: counted from zero, timed from its first byte.
        self._in_head, self._head_bytes = not pipelined, 0

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.read_timeout_s, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes == 0:  # an idle connection: nothing to answer
                self.transport.close()
                return
            self._refuse(408, f"request head not sent within {self.read_timeout_s:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` as plain text and close the connection."""
        if self.transport.is_closing():
            return
        key = "read_timeout_s" if status == 408 else "max_header_bytes"
        body = f"{message} (limits.{key})".encode("ascii")
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        self._stop_head_timer()
