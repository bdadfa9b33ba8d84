"""Entry point of the moto service process (started by ``MotoService``; not for direct use)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path


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
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    base = f"http://{args.host}:{args.port}"
    requests.post(f"{base}/moto-api/seed?a={args.seed}", timeout=30).raise_for_status()
    replayed = 0
    if args.recording.is_file() and args.recording.stat().st_size:
        replayed = sum(1 for _ in args.recording.open())
        requests.post(f"{base}/moto-api/recorder/replay-recording", timeout=600).raise_for_status()
    requests.post(f"{base}/moto-api/recorder/start-recording", timeout=30).raise_for_status()
    print(f"moto listening on {base}; replayed {replayed} recorded requests", flush=True)
    args.ready_file.write_text(base)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    args.ready_file.unlink(missing_ok=True)
    server.stop()


if __name__ == "__main__":
    main()
