"""POST /demo/tracecontext/: the forwarding service of the W3C test harness.

The W3C trace-context harness posts a JSON list of ``{"url": ...,
"arguments": ...}`` objects here. For each one, in order, this view POSTs
``arguments`` as JSON to ``url`` through the instrumented ``requests``
client, so every request carries this service's ``traceparent`` and
``tracestate``, and only then responds 200. docs/tracing.md shows how to
run the harness against it.

Only loopback URLs are followed unless TRACECONTEXT_ALLOW_ANY_HOST is true,
because the endpoint has no authentication and would otherwise send
requests anywhere on the caller's behalf.
"""

import ipaddress
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from opentelemetry import trace

logger = logging.getLogger(__name__)

# Seconds to wait for each forwarded request.
FORWARD_TIMEOUT = 5.0
# Maximum number of forwards in one request body.
MAX_FORWARDS = 32
LOOPBACK_NAMES = frozenset({"localhost"})


class InvalidInstructions(ValueError):
    """The request body is not a list of forwarding instructions."""


def is_loopback(url: str) -> bool:
    """Return whether the URL's host is a loopback address or "localhost"."""
    host = urlsplit(url).hostname or ""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_instructions(body: bytes) -> list[dict[str, Any]]:
    """Parse and check the body: a list of objects with an http(s) ``url``."""
    try:
        instructions = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInstructions(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(instructions, list):
        raise InvalidInstructions("The body must be a JSON list of objects.")
    if len(instructions) > MAX_FORWARDS:
        raise InvalidInstructions(
            f"At most {MAX_FORWARDS} forwards are allowed, got {len(instructions)}."
        )
    allow_any_host = settings.TRACECONTEXT_ALLOW_ANY_HOST
    for index, item in enumerate(instructions):
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in {"http", "https"}:
            raise InvalidInstructions(f"Item {index}: url must be an http(s) URL.")
        if not allow_any_host and not is_loopback(url):
            raise InvalidInstructions(
                f"Item {index}: {url} is not a loopback URL; set "
                "TRACECONTEXT_ALLOW_ANY_HOST=true to forward to other hosts."
            )
    return instructions


def _problem(status: int, detail: str) -> JsonResponse:
    body = {
        "type": "/api/problems/invalid",
        "title": "Invalid input.",
        "status": status,
        "detail": detail,
        "code": "invalid",
    }
    return JsonResponse(body, status=status, content_type="application/problem+json")


def forward(url: str, arguments: Any) -> dict[str, Any]:
    """POST ``arguments`` to ``url`` in a span of its own; describe the result."""
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(
        "tracecontext.forward", attributes={"url.full": url}
    ):
        try:
            response = requests.post(
                url, json=arguments, timeout=FORWARD_TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            logger.warning("forward to %s failed: %s", url, exc)
            return {"url": url, "status_code": None, "error": str(exc)}
    return {"url": url, "status_code": response.status_code}


@csrf_exempt
@require_POST
def tracecontext_forward(request: HttpRequest) -> JsonResponse:
    """Forward each instruction in order, then respond 200 with the results."""
    try:
        instructions = parse_instructions(request.body)
    except InvalidInstructions as exc:
        return _problem(400, str(exc))
    results = [forward(item["url"], item.get("arguments")) for item in instructions]
    return JsonResponse({"forwarded": results})
