"""The propagator itself: duplicate traceparent values from any getter."""

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import Getter

from controlplane.tracing import W3CTraceContextPropagator

FIRST = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SECOND = "00-11111111111111111111111111111111-2222222222222222-01"


class ListGetter(Getter[dict[str, list[str]]]):
    """A getter that returns every header line, as an ASGI server would."""

    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


def extracted(carrier: dict[str, list[str]]) -> trace.SpanContext:
    context = W3CTraceContextPropagator().extract(carrier, getter=ListGetter())
    return trace.get_current_span(context).get_span_context()


def test_global_propagator_is_strict() -> None:
    assert isinstance(get_global_textmap(), W3CTraceContextPropagator)


def test_single_traceparent_is_extracted() -> None:
    span_context = extracted({"traceparent": [FIRST], "tracestate": ["foo=1"]})

    assert span_context.is_valid
    assert span_context.is_remote
    assert dict(span_context.trace_state.items()) == {"foo": "1"}


def test_two_traceparent_lines_are_invalid() -> None:
    span_context = extracted({"traceparent": [FIRST, SECOND], "tracestate": ["foo=1"]})

    assert not span_context.is_valid


def test_two_identical_lines_are_invalid() -> None:
    assert not extracted({"traceparent": [FIRST, FIRST]}).is_valid


def test_comma_joined_future_version_is_invalid() -> None:
    joined = FIRST.replace("00-", "cc-", 1) + "-extra," + SECOND

    assert not extracted({"traceparent": [joined]}).is_valid


def test_multiple_tracestate_lines_are_combined() -> None:
    span_context = extracted(
        {"traceparent": [FIRST], "tracestate": ["foo=1,bar=2", "", "baz=3"]}
    )

    assert list(span_context.trace_state.items()) == [
        ("foo", "1"),
        ("bar", "2"),
        ("baz", "3"),
    ]


def test_duplicate_key_across_lines_drops_tracestate() -> None:
    span_context = extracted({"traceparent": [FIRST], "tracestate": ["foo=1", "foo=2"]})

    assert span_context.is_valid
    assert len(span_context.trace_state) == 0
