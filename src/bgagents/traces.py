"""Traces for `serve` and `worker`: a tracer provider from the standard OpenTelemetry variables.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (OTLP over HTTP; the
exporter reads its headers, timeout and so on from the other `OTEL_EXPORTER_OTLP_*` variables) and the `otel`
extra is installed; `OTEL_SDK_DISABLED=true` turns it off; `OTEL_SERVICE_NAME` names the service (default
`bgagents`)."""

from __future__ import annotations

import logging
import os

from opentelemetry.trace import TracerProvider

log = logging.getLogger("bgagents.traces")


def provider_from_env() -> TracerProvider | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_* is set but the otel extra is not installed (pip install "
                    "'bgagents[otel]'): no traces are sent")
        return None
    service = os.environ.get("OTEL_SERVICE_NAME") or "bgagents"
    provider = SdkTracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    log.info("traces go to %s (OTLP over HTTP, service %s)", endpoint, service)
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Sends what is still buffered (the SDK's provider has shutdown(); the API's no-op one has none)."""
    close = getattr(provider, "shutdown", None)
    if callable(close):
        close()
