"""A local OTLP/HTTP receiver on 127.0.0.1 for subprocess tests: it decodes what an instrumented
process exports (spans with their attributes, log records, metric data points)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int


@dataclass
class Received:
    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # body, trace, span, attrs
    metric_points: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)  # name, attrs, point
    lock: threading.Lock = field(default_factory=threading.Lock)

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        return [(a, p) for n, a, p in self.metric_points if n == name]

    def add(self, path: str, body: bytes) -> None:
        with self.lock:
            if path == "/v1/traces":
                for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            attrs = {kv.key: _value(kv.value) for kv in s.attributes}
                            ids = (s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex())
                            self.spans.append(ReceivedSpan(s.name, *ids, s.kind, attrs, s.status.code))
            elif path == "/v1/logs":
                for rl in ExportLogsServiceRequest.FromString(body).resource_logs:
                    for sl in rl.scope_logs:
                        for rec in sl.log_records:
                            attrs = {kv.key: _value(kv.value) for kv in rec.attributes}
                            self.logs.append(
                                (rec.body.string_value, rec.trace_id.hex(), rec.span_id.hex(), attrs)
                            )
            elif path == "/v1/metrics":
                for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            data = getattr(m, m.WhichOneof("data"))
                            for p in data.data_points:
                                attrs = {kv.key: _value(kv.value) for kv in p.attributes}
                                self.metric_points.append((m.name, attrs, p))


@contextmanager
def otlp_receiver(port: int = 0) -> Iterator[tuple[Received, str]]:
    """Serve on `port` (default: a free one) until the block ends; yields what arrived and the URL."""
    state = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            state.add(self.path, body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
