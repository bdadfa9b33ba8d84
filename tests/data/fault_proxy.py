"""A TCP proxy on loopback in front of a real server, that fails the connections it is told to.

    proxy = FaultProxy("127.0.0.1", moto_port).start()
    proxy.fail_next(3, "drop")    # the next 3 connections are closed at once, unanswered
    proxy.fail_next(1, "stall")   # the next one is held open, unanswered, for stall_s
    ...                           # every other connection is piped to the server both ways
    proxy.stop()

``faulted`` counts the connections it failed (each one is one try of a client whose own
retries are off), ``passed`` the ones it piped through. It runs an asyncio loop in a thread of
the test process, so a client in that process or in a child process can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from typing import Literal

Fault = Literal["drop", "stall"]


class FaultProxy:
    def __init__(self, host: str, port: int, *, stall_s: float = 30.0) -> None:
        self.upstream = (host, port)
        self.stall_s = stall_s
        self.faults: list[Fault] = []
        self.faulted = 0
        self.passed = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, fault: Fault) -> None:
        with self._lock:
            self.faults += [fault] * count

    def _take(self) -> Fault | None:
        with self._lock:
            if not self.faults:
                self.passed += 1
                return None
            self.faulted += 1
            return self.faults.pop(0)

    def start(self) -> FaultProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self._take()
        try:
            if fault == "stall":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._swallow(reader), self.stall_s)
            elif fault is None:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            writer.close()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@contextlib.contextmanager
def moto_behind_proxy(prefix: str, **proxy_options):
    """moto's S3 server on loopback with a new bucket, and a ``FaultProxy`` in front of it;
    yields ``(moto_url, bucket, proxy)``. Clients point ``AWS_ENDPOINT_URL`` at ``proxy.url``.
    The bucket's name is ``prefix`` and a random suffix: moto keeps its state per process, so
    what other tests left in a bucket of the same name would still be there."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    proxy = FaultProxy(host, port, **proxy_options).start()
    try:
        moto_url = f"http://{host}:{port}"
        bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket=bucket)
        yield moto_url, bucket, proxy
    finally:
        proxy.stop()
        server.stop()
