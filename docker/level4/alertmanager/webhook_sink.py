"""A webhook receiver that logs what Alertmanager sends: the `alert-sink` of the level-4 stack.

Every POST is one notification; its path names the receiver route (``/oncall``, ``/team``,
``/retrain`` in alertmanager.yml). Each is printed as a JSON line on stdout (``podman logs``) and
kept in memory: ``GET /received`` returns them all, ``GET /healthz`` answers ``ok``. Standard
library only, so it runs in any image with Python 3.

    python3 webhook_sink.py [--host 0.0.0.0] [--port 5001]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Sink:
    """The notifications received so far (thread-safe: the server handles requests in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def add(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)


def summarise(path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The parts of an Alertmanager webhook payload a reader needs: receiver, status, alerts."""
    return {
        "path": path,
        "receiver": payload.get("receiver"),
        "status": payload.get("status"),
        "alerts": [
            {
                "alertname": a.get("labels", {}).get("alertname"),
                "status": a.get("status"),
                "labels": a.get("labels", {}),
            }
            for a in payload.get("alerts", [])
        ],
    }


def make_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``sink``."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, "ok")
            elif self.path == "/received":
                self._answer(200, sink.all())
            else:
                self._answer(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._answer(400, {"error": "body is not JSON"})
                return
            if not isinstance(payload, dict):
                self._answer(400, {"error": "body is not a JSON object"})
                return
            item = summarise(self.path, payload)
            sink.add(item)
            print(json.dumps(item), flush=True)
            self._answer(200, {"received": len(item["alerts"])})

        def log_message(self, format: str, *args: Any) -> None:
            return  # the JSON lines above are the log

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Sink()))
    print(f"alert sink listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
