"""OpenTelemetry traces and metrics of every reply, for any tracing backend (docs/logs.md).

The `otel` extra (`pip install 'polybot-poe[otel]'`) and an OTLP endpoint in the standard variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, or `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`) turn it on.
Without them nothing here runs and OpenTelemetry is never imported.

A `Telemetry` is, like the reply store, a handler on `polybot.reply`: it turns each reply's record
into one span with a child span per provider call and per tool call (the record carries their
start and length, so the spans keep their real times) and into the GenAI semantic conventions'
metrics. Spans and metrics are exported over OTLP/HTTP (protobuf) by the SDK's own background
threads. No message text and no key is ever an attribute.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("polybot")

REPLY_LOGGER = "polybot.reply"
TRACES_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
METRICS_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
#: Outcomes that are not errors (a truncated reply was still answered; a cached one too).
ANSWERED = frozenset({"ok", "truncated"})


def wanted(environ: Mapping[str, str]) -> tuple[bool, bool]:
    """(traces, metrics): which the environment asks for (an OTLP endpoint, not turned off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False, False
    traces = any(environ.get(v) for v in TRACES_VARS) and environ.get("OTEL_TRACES_EXPORTER", "") != "none"
    metrics = any(environ.get(v) for v in METRICS_VARS) and environ.get("OTEL_METRICS_EXPORTER", "") != "none"
    return traces, metrics


def install(environ: Mapping[str, str] | None = None) -> Telemetry | None:
    """Export every reply of this process as traces and metrics when the environment asks for it."""
    environ = os.environ if environ is None else environ
    traces, metrics = wanted(environ)
    if not (traces or metrics):
        return None
    try:
        telemetry = Telemetry(environ, traces=traces, metrics=metrics)
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_* is set but OpenTelemetry is not installed: "
                    "pip install 'polybot-poe[otel]' to send traces and metrics")
        return None
    logger = logging.getLogger(REPLY_LOGGER)
    logger.addHandler(telemetry)
    logger.setLevel(logging.INFO)
    import atexit

    atexit.register(telemetry.shutdown)
    return telemetry


class Telemetry(logging.Handler):
    """Spans and metrics from reply records; exporters configured by the OTEL_* variables."""

    def __init__(self, environ: Mapping[str, str], *, traces: bool = True, metrics: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource

        from polybot.version import __version__

        super().__init__(logging.INFO)
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win (the SDK reads them); else "polybot".
        named = environ.get("OTEL_SERVICE_NAME") or "service.name" in environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        resource = Resource.create({} if named else {"service.name": "polybot"})
        self.traces: TracerProvider | None = None
        self.meters: MeterProvider | None = None
        self._failed = False
        if traces:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            self.traces = TracerProvider(resource=resource)
            self.traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            self.tracer = self.traces.get_tracer("polybot", __version__)
        if metrics:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            self.meters = MeterProvider(resource=resource,
                                        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
            meter = self.meters.get_meter("polybot", __version__)
            self.token_usage = meter.create_histogram(
                "gen_ai.client.token.usage", unit="{token}", description="Tokens used per provider reply",
                explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144,
                                                     1048576, 4194304, 16777216, 67108864])
            seconds = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration", unit="s", description="Time to the end of each reply",
                explicit_bucket_boundaries_advisory=seconds)
            self.first_chunk = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk", unit="s",
                description="Time to the first chunk of each reply", explicit_bucket_boundaries_advisory=seconds)
            self.replies = meter.create_counter("polybot.replies", unit="{reply}",
                                                description="Replies by bot and outcome")

    def handle(self, record: logging.LogRecord) -> bool:
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        reply = getattr(record, "reply", None)
        if not isinstance(reply, Mapping) or reply.get("event", "reply") != "reply":
            return
        try:
            if self.traces is not None:
                self._spans(reply)
            if self.meters is not None:
                self._metrics(reply)
        except Exception as exc:  # noqa: BLE001 - telemetry never fails a reply: said once
            if not self._failed:
                self._failed = True
                log.warning("telemetry: a reply could not be traced (%s: %s)", type(exc).__name__, exc)

    def _spans(self, r: Mapping[str, Any]) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        end = int((r.get("ts") or time.time()) * 1e9)
        start = end - int((r.get("duration_ms") or 0) * 1e6)
        outcome = str(r.get("outcome"))
        attributes = _attributes(r) | {
            "polybot.bot": str(r.get("bot")), "polybot.outcome": outcome,
            "polybot.attempts": int(r.get("attempts") or 0), "polybot.fallback": bool(r.get("fallback")),
            "polybot.cached": bool(r.get("cached")), "polybot.tool_rounds": int(r.get("tool_rounds") or 0),
        }
        for key, name in (("conversation_id", "gen_ai.conversation.id"), ("message_id", "polybot.message_id")):
            if r.get(key):
                attributes[name] = str(r[key])
        for key, name in (("input_tokens", "gen_ai.usage.input_tokens"),
                          ("output_tokens", "gen_ai.usage.output_tokens"),
                          ("reasoning_tokens", "gen_ai.usage.reasoning_tokens"),
                          ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"), ("ttft_ms", "polybot.ttft_ms")):
            if r.get(key) is not None:
                attributes[name] = int(r[key])
        if r.get("finish_reason"):
            attributes["gen_ai.response.finish_reasons"] = [str(r["finish_reason"])]
        root = self.tracer.start_span(f"reply {r.get('bot')}", kind=SpanKind.SERVER, start_time=start,
                                      attributes=attributes)
        if outcome not in ANSWERED:
            root.set_attribute("error.type", outcome)
            root.set_status(Status(StatusCode.ERROR, outcome))
        parent = trace.set_span_in_context(root)
        for call in r.get("calls") or ():
            call_start = start + int(call.get("start_ms", 0) * 1e6)
            call_attributes = _attributes(call)
            for key, name in (("input_tokens", "gen_ai.usage.input_tokens"),
                              ("output_tokens", "gen_ai.usage.output_tokens")):
                if call.get(key) is not None:
                    call_attributes[name] = int(call[key])
            if call.get("finish_reason"):
                call_attributes["gen_ai.response.finish_reasons"] = [str(call["finish_reason"])]
            span = self.tracer.start_span(f"chat {call.get('model')}", context=parent, kind=SpanKind.CLIENT,
                                          start_time=call_start, attributes=call_attributes)
            if call.get("outcome") in ("error", "cancelled"):
                span.set_attribute("error.type", str(call.get("outcome")))
                span.set_status(Status(StatusCode.ERROR, str(call.get("error") or call.get("outcome"))))
            span.end(end_time=call_start + int(call.get("ms", 0) * 1e6))
        for tool in r.get("tool_calls") or ():
            if "start_ms" not in tool:
                continue  # a tool the caller runs (returned to it): no time here
            tool_start = start + int(tool["start_ms"] * 1e6)
            span = self.tracer.start_span(f"execute_tool {tool.get('name')}", context=parent,
                                          kind=SpanKind.INTERNAL, start_time=tool_start,
                                          attributes={"gen_ai.operation.name": "execute_tool",
                                                      "gen_ai.tool.name": str(tool.get("name"))})
            if not tool.get("ok", True):
                span.set_attribute("error.type", "tool_error")
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=tool_start + int(tool.get("ms", 0) * 1e6))
        root.end(end_time=end)

    def _metrics(self, r: Mapping[str, Any]) -> None:
        attributes: dict[str, Any] = _attributes(r) | {"polybot.bot": str(r.get("bot"))}
        outcome = str(r.get("outcome"))
        self.replies.add(1, attributes | {"polybot.outcome": outcome})
        if r.get("cached") or outcome == "limited":
            return  # no provider call: no tokens, no provider time
        for key, kind in (("input_tokens", "input"), ("output_tokens", "output")):
            if r.get(key) is not None:
                self.token_usage.record(int(r[key]), attributes | {"gen_ai.token.type": kind})
        ended = attributes if outcome in ANSWERED else attributes | {"error.type": outcome}
        self.duration.record((r.get("duration_ms") or 0) / 1000, ended)
        if r.get("ttft_ms") is not None:
            self.first_chunk.record(r["ttft_ms"] / 1000, ended)

    # Not logging's flush() / close(): uvicorn's dictConfig calls those on every handler at start-up.

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything recorded so far."""
        if self.traces is not None:
            self.traces.force_flush(timeout_millis)
        if self.meters is not None:
            self.meters.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is left and stop the exporters (idempotent)."""
        logging.getLogger(REPLY_LOGGER).removeHandler(self)
        traces, meters = self.traces, self.meters
        self.traces = self.meters = None
        if traces is not None:
            traces.shutdown()
        if meters is not None:
            meters.shutdown()


def _attributes(r: Mapping[str, Any]) -> dict[str, Any]:
    """The GenAI attributes of a reply or one provider call: operation, provider, model."""
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": str(r.get("provider")),
            "gen_ai.request.model": str(r.get("model"))}
