"""A webhook receiver for Alertmanager, started by a test on the stack's own Docker network."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stackkit import Stack


@dataclass
class Receiver:
    """Webhook payloads Alertmanager posted, in arrival order."""

    payloads: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        with self.lock:
            found = [a for p in self.payloads for a in p.get("alerts", [])]
        return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.payloads.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _gateway(stack: Stack) -> str:
    """This host's address on the stack's own Docker network (what Alertmanager can reach)."""
    net = f"{stack.project}_default"
    out = subprocess.run(
        ["docker", "network", "inspect", net, "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert out, f"network {net} has no gateway"
    return out


@contextlib.contextmanager
def webhook_receiver(stack: Stack) -> Iterator[Receiver]:
    """Points the stack's page and ticket receivers at a server this process runs, restores them after."""
    rec = Receiver()
    server = ThreadingHTTPServer((_gateway(stack), 0), _handler(rec))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    files = [Path(stack.env[f"ALERT_{k}_WEBHOOK_URL_FILE"]) for k in ("PAGE", "TICKET")]
    before = [f.read_text() for f in files]
    for f in files:  # in place: the file is bind-mounted, Alertmanager reads it at each notification
        with f.open("w") as fh:
            fh.write(url)
    try:
        yield rec
    finally:
        for f, text in zip(files, before, strict=True):
            with f.open("w") as fh:
                fh.write(text)
        server.shutdown()
        server.server_close()
