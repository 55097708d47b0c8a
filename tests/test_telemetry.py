"""OpenTelemetry (docs/logs.md): the real OTLP/HTTP exporter sends each reply's spans and metrics to a
receiver on 127.0.0.1, which decodes the protobuf it really got; nothing of it is imported when
OTEL_EXPORTER_OTLP_* is unset."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from polybot import telemetry
from tests.test_runtime import request, runtime
from tests.test_store import KEY, ToolFake, failover_project, fake  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[1]


class Receiver:
    """An OTLP/HTTP collector: keeps the raw bodies POSTed to /v1/traces and /v1/metrics."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Any]:
        found = []
        for body in self.bodies["/v1/traces"]:
            message = ExportTraceServiceRequest()
            message.ParseFromString(body)
            found += [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]
        return found

    def metrics(self) -> dict[str, Any]:
        found = {}
        for body in self.bodies["/v1/metrics"]:
            message = ExportMetricsServiceRequest()
            message.ParseFromString(body)
            for rm in message.resource_metrics:
                for sm in rm.scope_metrics:
                    found.update({m.name: m for m in sm.metrics})
        return found


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "bots-under-test")
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def attrs(attributes: Any) -> dict[str, Any]:
    def value(kv: KeyValue) -> Any:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [getattr(x, x.WhichOneof("value")) for x in v.array_value.values]
        return getattr(v, kind)

    return {kv.key: value(kv) for kv in attributes}


async def test_a_reply_is_one_span_with_a_child_per_attempt_and_tool_call_and_genai_metrics(
        tmp_path: Path, fake: ToolFake, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("STORE_KEY", KEY)
    failover_project(tmp_path, fake)
    handler = telemetry.install()
    assert handler is not None
    rt = runtime(tmp_path, "Tooly")
    try:
        events = [e async for e in rt.respond(request(("user", "Weather in Oslo, privately?")))]
        await rt.pool.aclose()
        handler.force_flush()
    finally:
        handler.shutdown()
    assert not any(isinstance(e, fp.ErrorResponse) for e in events)
    spans = receiver.spans()
    [root] = [s for s in spans if s.name == "reply Tooly"]
    children = [s for s in spans if s is not root]
    assert all(s.parent_span_id == root.span_id and s.trace_id == root.trace_id for s in children)
    chats = sorted((s for s in children if s.name == "chat gpt-4o"), key=lambda s: s.start_time_unix_nano)
    [tool] = [s for s in children if s.name == "execute_tool get_weather"]
    assert len(chats) == 3 and len(children) == 4
    assert [attrs(s.attributes)["gen_ai.provider.name"] for s in chats] == ["main", "backup", "backup"]
    assert chats[0].status.code == 2 and attrs(chats[0].attributes)["error.type"] == "error"  # STATUS_CODE_ERROR
    assert attrs(chats[2].attributes) == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "backup",
                                          "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 20,
                                          "gen_ai.usage.output_tokens": 5, "gen_ai.response.finish_reasons": ["stop"]}
    assert attrs(tool.attributes) == {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"}
    # Children sit inside the reply, in order: the failed call, the tool-call round, the tool, the answer.
    assert root.start_time_unix_nano <= chats[0].start_time_unix_nano
    assert chats[1].end_time_unix_nano <= tool.start_time_unix_nano <= tool.end_time_unix_nano \
        <= chats[2].start_time_unix_nano <= chats[2].end_time_unix_nano <= root.end_time_unix_nano
    top = attrs(root.attributes)
    assert {k: top[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
                                "polybot.bot", "polybot.outcome", "polybot.attempts", "polybot.fallback",
                                "gen_ai.conversation.id", "gen_ai.usage.input_tokens")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "backup", "gen_ai.request.model": "gpt-4o",
        "polybot.bot": "Tooly", "polybot.outcome": "ok", "polybot.attempts": 3, "polybot.fallback": True,
        "gen_ai.conversation.id": "c7", "gen_ai.usage.input_tokens": 20}
    metrics = receiver.metrics()
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration",
            "gen_ai.client.operation.time_to_first_chunk", "polybot.replies"} <= set(metrics)
    usage = {attrs(p.attributes)["gen_ai.token.type"]: p.sum
             for p in metrics["gen_ai.client.token.usage"].histogram.data_points}
    assert usage == {"input": 20, "output": 5}
    [duration] = metrics["gen_ai.client.operation.duration"].histogram.data_points
    assert attrs(duration.attributes)["gen_ai.request.model"] == "gpt-4o" and 0 < duration.sum < 10
    assert metrics["gen_ai.client.operation.duration"].unit == "s"
    # Neither a key nor message text ever leaves in a span or metric; the service is named as told.
    sent = b"".join(b for bodies in receiver.bodies.values() for b in bodies)
    assert KEY.encode() not in sent and b"privately" not in sent and b"21 C" not in sent
    assert b"bots-under-test" in sent


def test_without_an_endpoint_nothing_is_installed_or_imported(tmp_path: Path) -> None:
    """dev's and serve's set-up with no OTEL_EXPORTER_OTLP_*: no SDK, no exporter in the process.
    (FastAPI itself imports the OpenTelemetry API; polybot adds nothing to it.)"""
    code = (
        "import os, sys, pathlib\n"
        "for k in list(os.environ):\n"
        "    k.startswith('OTEL_') and os.environ.pop(k)\n"
        "from polybot.replylog import observe\n"
        "from polybot.config import ProjectSettings\n"
        f"store = observe(pathlib.Path({str(tmp_path)!r}), ProjectSettings(), dict, dev=False)\n"
        "store.stop()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout == "[]\n", out.stderr


def test_an_endpoint_without_the_extra_says_so_once(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    import builtins

    real = builtins.__import__

    def no_sdk(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.sdk"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(builtins, "__import__", no_sdk)
    assert telemetry.install() is None
    [message] = [r.getMessage() for r in caplog.records]
    assert "pip install 'polybot-poe[otel]'" in message


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, (False, False)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, (True, True)),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x/v1/traces"}, (True, False)),
    ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://x/v1/metrics"}, (False, True)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, (False, False)),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_METRICS_EXPORTER": "none"}, (True, False)),
])
def test_what_the_environment_asks_for(environ: dict[str, str], expected: tuple[bool, bool]) -> None:
    assert telemetry.wanted(environ) == expected
