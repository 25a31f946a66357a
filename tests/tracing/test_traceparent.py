"""W3C traceparent and tracestate handling of incoming requests.

Each case sends headers to POST /demo/tracecontext/ (an empty list of
forwards, so the view does nothing else) through the Django test client and
checks the server span: it continues the caller's trace, or it starts a new
one and drops tracestate, as the W3C Trace Context recommendation requires.
"""

from typing import Any

import pytest
from django.test import Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def server_span(spans: InMemorySpanExporter, headers: dict[str, str]) -> ReadableSpan:
    response = Client().post(
        "/demo/tracecontext/",
        data=b"[]",
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200, response.content
    servers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 1, servers
    return servers[0]


def continues(span: ReadableSpan, trace_id: str = TRACE_ID) -> bool:
    return (
        format_trace_id(span.context.trace_id) == trace_id
        and span.parent is not None
        and format_span_id(span.parent.span_id) == PARENT_ID
    )


def tracestate(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.context.trace_state.items())


@pytest.mark.parametrize(
    "traceparent",
    [
        VALID,
        f"00-{TRACE_ID}-{PARENT_ID}-ff",
        f" \t{VALID}\t ",
        f"cc-{TRACE_ID}-{PARENT_ID}-01",
        f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like",
        f"fe-{TRACE_ID}-{PARENT_ID}-09-extra",
    ],
    ids=[
        "v00-sampled",
        "v00-unknown-flags",
        "surrounding-whitespace",
        "future-version",
        "future-version-extra-fields",
        "future-version-extra-flags",
    ],
)
def test_valid_traceparent_continues(
    finished_spans: InMemorySpanExporter, traceparent: str
) -> None:
    span = server_span(finished_spans, {"traceparent": traceparent})

    assert continues(span)


INVALID = {
    "trace-id-too-short": f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
    "trace-id-too-long": f"00-{TRACE_ID}0-{PARENT_ID}-01",
    "parent-id-too-short": f"00-{TRACE_ID}-{PARENT_ID[:-1]}-01",
    "parent-id-too-long": f"00-{TRACE_ID}-{PARENT_ID}0-01",
    "flags-too-short": f"00-{TRACE_ID}-{PARENT_ID}-1",
    "flags-too-long": f"00-{TRACE_ID}-{PARENT_ID}-001",
    "flags-not-hex": f"00-{TRACE_ID}-{PARENT_ID}-0g",
    "flags-dot": f"00-{TRACE_ID}-{PARENT_ID}-0.",
    "version-too-short": f"0-{TRACE_ID}-{PARENT_ID}-01",
    "version-too-long": f"000-{TRACE_ID}-{PARENT_ID}-01",
    "version-ff": f"ff-{TRACE_ID}-{PARENT_ID}-01",
    "version-not-hex": f"0x-{TRACE_ID}-{PARENT_ID}-01",
    "version-00-extra-field": f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
    "version-00-trailing-dash": f"00-{TRACE_ID}-{PARENT_ID}-01-",
    "future-version-bad-separator": f"cc-{TRACE_ID}-{PARENT_ID}-01.extra",
    "uppercase-trace-id": f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
    "uppercase-parent-id": f"00-{TRACE_ID}-{PARENT_ID.upper()}-01",
    "uppercase-version": f"0A-{TRACE_ID}-{PARENT_ID}-01",
    "uppercase-flags": f"00-{TRACE_ID}-{PARENT_ID}-0A",
    "all-zero-trace-id": f"00-{'0' * 32}-{PARENT_ID}-01",
    "all-zero-parent-id": f"00-{TRACE_ID}-{'0' * 16}-01",
    "trace-id-not-hex": f"00-{TRACE_ID[:-1]}z-{PARENT_ID}-01",
    "parent-id-not-hex": f"00-{TRACE_ID}-{PARENT_ID[:-1]}z-01",
    "wrong-separator": f"00_{TRACE_ID}_{PARENT_ID}_01",
    "empty": "",
    "garbage": "not a traceparent",
}


@pytest.mark.parametrize("traceparent", INVALID.values(), ids=INVALID.keys())
def test_invalid_traceparent_starts_new_trace(
    finished_spans: InMemorySpanExporter, traceparent: str
) -> None:
    span = server_span(
        finished_spans, {"traceparent": traceparent, "tracestate": "foo=1,bar=2"}
    )

    assert span.parent is None
    assert format_trace_id(span.context.trace_id) != TRACE_ID
    assert tracestate(span) == {}


def test_duplicate_traceparent_lines_start_new_trace(
    finished_spans: InMemorySpanExporter,
) -> None:
    # A WSGI server joins two header lines of one name with a comma.
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    span = server_span(
        finished_spans,
        {"traceparent": f"{VALID},{other}", "tracestate": "foo=1"},
    )

    assert span.parent is None
    assert format_trace_id(span.context.trace_id) not in {TRACE_ID, "1" * 32}
    assert tracestate(span) == {}


def test_missing_traceparent_starts_new_trace(
    finished_spans: InMemorySpanExporter,
) -> None:
    span = server_span(finished_spans, {"tracestate": "foo=1"})

    assert span.parent is None
    assert tracestate(span) == {}


VALID_TRACESTATES = {
    "one-member": ("foo=1", {"foo": "1"}),
    "two-members": ("foo=1,bar=2", {"foo": "1", "bar": "2"}),
    "whitespace": ("foo=1 \t , \t bar=2", {"foo": "1", "bar": "2"}),
    "empty-members": ("foo=1,,bar=2,", {"foo": "1", "bar": "2"}),
    "multi-tenant-key": ("tenant@vendor=x", {"tenant@vendor": "x"}),
    "all-key-characters": (
        "a0_-*/=v",
        {"a0_-*/": "v"},
    ),
    "value-with-spaces-inside": ("foo=a b", {"foo": "a b"}),
    "32-members": (
        ",".join(f"k{i}=v{i}" for i in range(32)),
        {f"k{i}": f"v{i}" for i in range(32)},
    ),
    "longest-key": ("a" + "b" * 255 + "=1", {"a" + "b" * 255: "1"}),
    "longest-value": ("foo=" + "v" * 256, {"foo": "v" * 256}),
}


@pytest.mark.parametrize(
    ("header", "expected"), VALID_TRACESTATES.values(), ids=VALID_TRACESTATES.keys()
)
def test_valid_tracestate_is_kept(
    finished_spans: InMemorySpanExporter, header: str, expected: dict[str, str]
) -> None:
    span = server_span(finished_spans, {"traceparent": VALID, "tracestate": header})

    assert continues(span)
    assert tracestate(span) == expected


INVALID_TRACESTATES = {
    "33-members": ",".join(f"k{i}=v{i}" for i in range(33)),
    "duplicate-key": "foo=1,foo=2",
    "duplicate-key-same-value": "foo=1,bar=2,foo=1",
    "uppercase-key": "FOO=1",
    "key-starts-with-digit": "1foo=1",
    "key-with-dot": "foo.bar=1",
    "key-with-space": "foo =1",
    "key-too-long": "a" + "b" * 256 + "=1",
    "empty-tenant": "@vendor=1",
    "empty-vendor": "foo@=1",
    "two-at-signs": "foo@bar@baz=1",
    "vendor-too-long": "foo@" + "v" * 15 + "=1",
    "value-too-long": "foo=" + "v" * 257,
    "value-with-comma-equals": "foo=a=b",
    "missing-equals": "foo",
    "empty-value": "foo=",
    "non-ascii-value": "foo=caf\u00e9",
}


@pytest.mark.parametrize(
    "header", INVALID_TRACESTATES.values(), ids=INVALID_TRACESTATES.keys()
)
def test_invalid_tracestate_is_dropped(
    finished_spans: InMemorySpanExporter, header: str
) -> None:
    span = server_span(finished_spans, {"traceparent": VALID, "tracestate": header})

    assert continues(span)
    assert tracestate(span) == {}


def test_tracestate_longer_than_8192_is_dropped(
    finished_spans: InMemorySpanExporter,
) -> None:
    header = ",".join(f"k{i}=" + "v" * 255 for i in range(32))
    header += "," + "x" * (8193 - len(header) - 1)
    assert len(header) > 8192

    span = server_span(finished_spans, {"traceparent": VALID, "tracestate": header})

    assert continues(span)
    assert tracestate(span) == {}
