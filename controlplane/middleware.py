"""The X-Request-ID header: accepted or generated, echoed, logged, traced."""

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from opentelemetry import trace

from controlplane.logging import current_request_id

REQUEST_ID_HEADER = "X-Request-ID"
# 1 to 200 characters that are safe in a header, a log line and a URL.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,200}")
SPAN_ATTRIBUTE = "http.request.header.x_request_id"


def request_id_from(request: HttpRequest) -> str:
    """Return the client's X-Request-ID when it is valid, else a new UUID4 hex.

    An invalid id is replaced rather than rejected, because the header is a
    correlation aid and must never make a request fail.
    """
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    if REQUEST_ID_PATTERN.fullmatch(supplied):
        return supplied
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every request an id: on ``request.request_id``, the current
    span, every log record written while it runs, and the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        trace.get_current_span().set_attribute(SPAN_ATTRIBUTE, request_id)

        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
