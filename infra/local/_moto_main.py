"""Entry point of the moto service process (started by ``MotoService``; not for direct use)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path


def replay(recording: Path, base: str) -> int:
    """Send every recorded request again, one by one, in order (as moto's own replay does,
    but from this client thread: the server handles one request at a time)."""
    import base64
    import json
    from urllib.parse import urlparse

    import requests

    target = urlparse(base)
    count = 0
    with requests.Session() as session, recording.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            body = row.get("body") or ""
            if row.get("body_encoded"):
                body = base64.b64decode(body)
            url = urlparse(row["url"])._replace(scheme=target.scheme, netloc=target.netloc)
            headers = dict(row.get("headers") or {})
            headers.pop("Transfer-Encoding", None)
            session.request(row["method"], url.geturl(), headers=headers, data=body, timeout=60)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--recording", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    args = parser.parse_args()

    # moto reads the recording location when it is imported.
    os.environ["MOTO_RECORDER_FILEPATH"] = str(args.recording)
    import requests
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        # One request at a time: moto's ids come from one seeded generator, and the recorder
        # writes each request as it is handled, so the recording's order is the order ids were
        # drawn in. Replaying it one by one then gives every resource its id again, whatever
        # the concurrency of the clients that made the requests. moto answers in
        # milliseconds, so clients barely notice.
        with lock:
            return list(app(environ, start_response))

    server = make_server(args.host, args.port, serialized, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://{args.host}:{args.port}"
    requests.post(f"{base}/moto-api/seed?a={args.seed}", timeout=30).raise_for_status()
    replayed = replay(args.recording, base) if args.recording.is_file() else 0
    requests.post(f"{base}/moto-api/recorder/start-recording", timeout=30).raise_for_status()
    print(f"moto listening on {base}; replayed {replayed} recorded requests", flush=True)
    args.ready_file.write_text(base)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    args.ready_file.unlink(missing_ok=True)
    server.shutdown()


if __name__ == "__main__":
    main()
