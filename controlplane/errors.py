"""One error shape for the whole API, from one DRF exception handler.

Every error is a problem+json style object::

    {"type": "/api/problems/invalid", "title": "Invalid input.",
     "status": 400, "detail": "...", "code": "invalid",
     "errors": [{"field": "input.quantity", "code": "min_value",
                 "message": "...", "value": 0}]}

``errors`` is present for invalid input only; each entry names the field
(dotted path into the request body), the rule that was broken (DRF's stable
error code) and the rejected value when the request carried one.
"""

import json
import math
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request, page_not_found, server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

_MISSING = object()


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def _flatten(detail: Any, path: list[str], request_data: Any) -> list[dict[str, Any]]:
    if isinstance(detail, dict):
        found: list[dict[str, Any]] = []
        for key, value in detail.items():
            found.extend(_flatten(value, [*path, str(key)], request_data))
        return found
    if (
        isinstance(detail, list)
        and detail
        and not isinstance(detail[0], exceptions.ErrorDetail)
    ):
        found = []
        for index, value in enumerate(detail):
            found.extend(_flatten(value, [*path, str(index)], request_data))
        return found
    items = detail if isinstance(detail, list) else [detail]
    field = ".".join(p for p in path if p != "non_field_errors") or None
    value = _lookup(request_data, path)
    errors = []
    for item in items:
        entry: dict[str, Any] = {
            "field": field,
            "code": getattr(item, "code", "invalid"),
            "message": str(item),
        }
        if value is not _MISSING:
            entry["value"] = _capped(_json_safe(value))
        errors.append(entry)
    return errors


# An echoed value longer than this, as JSON, is cut: a client that sent a
# megabyte does not need it back to see which field was wrong.
VALUE_ECHO_LIMIT = 500


def _capped(value: Any) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= VALUE_ECHO_LIMIT:
        return value
    return f"{text[:VALUE_ECHO_LIMIT]}... [cut at {VALUE_ECHO_LIMIT} of {len(text)}]"


def _json_safe(value: Any) -> Any:
    """Return the value as JSON can carry it (inf and NaN become text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def problem(
    status_code: int,
    title: str,
    detail: str,
    code: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build an error response in the API's one shape."""
    body: dict[str, Any] = {
        "type": f"/api/problems/{code}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    response = Response(body, status=status_code, headers=headers)
    response.content_type = "application/problem+json"
    return response


def _title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase + "."
    except ValueError:
        return "Error."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn any API exception into the problem+json shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response

    headers = {
        name: value
        for name, value in response.headers.items()
        if name in {"WWW-Authenticate", "Retry-After", "Allow"}
    }
    if isinstance(exc, exceptions.ValidationError):
        request = context.get("request")
        data = getattr(request, "data", None) if request is not None else None
        if request is not None and request.method in ("GET", "HEAD"):
            # A list's filters come from the query string, not the body.
            data = request.query_params.dict()
        errors = _flatten(exc.detail, [], data)
        detail = "; ".join(f"{e['field'] or 'request'}: {e['message']}" for e in errors)
        return problem(
            status.HTTP_400_BAD_REQUEST,
            "Invalid input.",
            detail,
            "invalid",
            errors=errors,
            headers=headers,
        )
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else "error"
    detail_text = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return problem(
        response.status_code,
        _title(response.status_code),
        str(detail_text),
        code,
        headers=headers,
    )


def api_not_found(
    request: HttpRequest, exception: Exception | None = None
) -> HttpResponse:
    """Return 404 in the API's error shape under /api/, as HTML elsewhere."""
    if request.path.startswith(("/api/", "/demo/")):
        return _plain_problem(
            404, "Not Found.", f"No resource at {request.path}.", "not_found"
        )
    return page_not_found(request, exception or Http404())


def api_bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Return a request Django refused (too large, bad host) as a problem.

    Django raises these before a view runs, so DRF's handler never sees
    them: a body over DATA_UPLOAD_MAX_MEMORY_SIZE gets 413 with the limit.
    """
    if not request.path.startswith(("/api/", "/demo/")):
        return bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _plain_problem(
            413,
            "Request body too large.",
            f"The body must be at most {limit} bytes.",
            "body_too_large",
        )
    return _plain_problem(400, "Bad Request.", str(exception), "bad_request")


def api_server_error(request: HttpRequest) -> HttpResponse:
    """Return 500 in the API's error shape under /api/, as HTML elsewhere."""
    if request.path.startswith(("/api/", "/demo/")):
        return _plain_problem(
            500,
            "Internal Server Error.",
            "The server failed to handle the request; it is logged.",
            "server_error",
        )
    return server_error(request)


def _plain_problem(
    status_code: int, title: str, detail: str, code: str
) -> HttpResponse:
    body = {
        "type": f"/api/problems/{code}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    return JsonResponse(
        body, status=status_code, content_type="application/problem+json"
    )
