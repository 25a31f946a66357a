"""Fixtures of the tracing tests: the spans this process finished."""

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

_exporter = InMemorySpanExporter()
_installed = False


@pytest.fixture
def finished_spans() -> Iterator[InMemorySpanExporter]:
    """An exporter that receives every span ended during the test."""
    global _installed
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "tracing is not configured"
    if not _installed:
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        _installed = True
    _exporter.clear()
    yield _exporter
    _exporter.clear()
