"""``Idempotency-Key`` support for the mutating endpoints of the REST API.

Put ``@idempotent(...)`` on a DRF handler directly under its
``@extend_schema`` and above any ``@action``. The handler then runs after
authentication and permission checks, and a request that carries a key goes
through these steps:

1. Parse the key: a structured-field string (``"abc"``) or a bare value
   (``abc``) of 1 to 255 printable ASCII characters. A malformed key gets
   400, and so does a missing one where the endpoint requires a key. The
   scope is the authenticated user and the endpoint (method and route
   pattern). The fingerprint is the SHA-256 of the method, the path and the
   canonical JSON body (sorted keys, no whitespace).
2. Claim the key in a short transaction of its own: INSERT an
   ``in_progress`` row with a new claim token and ``locked_until = now +
   lease``, and commit. The unique constraint on the scope decides between
   simultaneous requests, so no row is read before it is written.
3. When the INSERT violates the constraint, read the existing row:

   a. expired, or ``in_progress`` with its lease passed (its process
      crashed): take it over by a compare-and-set UPDATE on its old claim
      token and continue at step 4;
   b. another fingerprint: 422;
   c. ``in_progress`` within its lease: 409 with ``Retry-After``;
   d. ``completed``: replay the stored status, headers and body with
      ``Idempotent-Replayed: true``.

4. Run the view and complete the record in one transaction, so the view's
   effects and the UPDATE that stores the response commit together. That
   UPDATE is a compare-and-set on ``status = in_progress`` and our claim
   token. The view runs in a savepoint, so an exception that becomes a 4xx
   rolls back the view's partial writes while its response is stored. If the
   UPDATE changes no row, another request took the claim over after our
   lease passed: the transaction rolls back and the client gets 409.
5. A 5xx response or an uncaught exception rolls that transaction back and
   deletes the claim (again only with our token), so a retry executes.

The claim commits before the view starts, so a second request with the
same key finds the row instead of waiting for the first request to finish.
On PostgreSQL its INSERT fails as soon as the short claim transaction has
committed. On SQLite (IMMEDIATE transactions) each write waits for the one
write lock, which step 4 holds for the view's duration; the second request
then reads the row and gets 409 or the replay, never a second execution.

Views whose effects live outside this database (a Celery task, Redis) use
``atomic=False``: the view runs outside a transaction, because holding the
SQLite write lock while waiting for a worker would block every writer. The
record is completed right after the view returns.
"""

import functools
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.errors import problem
from controlplane.models import DownstreamKey, IdempotencyRecord

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
# A rejected value is echoed in the error cut to this many characters.
SHOWN_VALUE_LENGTH = 64
# How often a request re-reads a row that changed under it (released,
# taken over) before it gives up with 409.
CLAIM_ATTEMPTS = 3

Handler = Callable[..., HttpResponseBase]
DecoratedHandler = TypeVar("DecoratedHandler", bound=Callable[..., Any])


class InvalidKey(ValueError):
    """A malformed ``Idempotency-Key`` header, with the rule it broke."""

    def __init__(self, code: str, rule: str) -> None:
        super().__init__(rule)
        self.code = code
        self.rule = rule


def parse_key(raw: str) -> str:
    """Return the key of a header value, quoted or bare; raise InvalidKey."""
    value = raw.strip(" \t")
    if "," in value and not value.startswith('"'):
        # Two Idempotency-Key headers reach the view joined by a comma.
        raise InvalidKey(
            "multiple_values",
            "must be one key; a bare key with a comma looks like a list or a "
            'header sent twice (quote a key that has a comma: "a,b")',
        )
    key = _unquote(value) if value.startswith('"') else value
    for position, char in enumerate(key):
        if not " " <= char <= "~":
            raise InvalidKey(
                "invalid_character",
                "must contain printable ASCII characters only (0x20 to 0x7E), "
                f"but has {char!r} at position {position}",
            )
    if not key:
        raise InvalidKey(
            "blank", f"must contain 1 to {KEY_MAX_LENGTH} characters, but is empty"
        )
    if len(key) > KEY_MAX_LENGTH:
        raise InvalidKey(
            "max_length",
            f"must contain 1 to {KEY_MAX_LENGTH} characters, but has {len(key)}",
        )
    return key


def _unquote(value: str) -> str:
    """Decode a structured-field string (RFC 8941, section 3.3.3)."""
    chars: list[str] = []
    position = 1
    while position < len(value):
        char = value[position]
        if char == "\\":
            escaped = value[position + 1 : position + 2]
            if escaped not in {'"', "\\"}:
                raise InvalidKey(
                    "invalid_quoting",
                    "may use a backslash only before a double quote or a backslash",
                )
            chars.append(escaped)
            position += 2
            continue
        if char == '"':
            if position != len(value) - 1:
                raise InvalidKey(
                    "invalid_quoting",
                    "must end at its closing double quote",
                )
            return "".join(chars)
        chars.append(char)
        position += 1
    raise InvalidKey(
        "invalid_quoting", "has an opening double quote but no closing one"
    )


def fingerprint(method: str, path: str, data: Any) -> str:
    """Return the SHA-256 of the method, path and canonical JSON body."""
    if isinstance(data, QueryDict):
        data = dict(data.lists())
    body = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(f"{method}\n{path}\n{body}".encode()).hexdigest()


_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})"
    r"-(?P<parent_id>[0-9a-f]{16})-[0-9a-f]{2}(?P<rest>.*)$"
)


def trace_id_from(request: Request) -> str | None:
    """Return the trace id of a valid W3C ``traceparent`` header, or None."""
    # NOTE: until the tracing feature sets an active span, the header is the
    # only source; the request's own trace id should win once spans exist.
    match = _TRACEPARENT.match(request.headers.get("traceparent", "").strip())
    if match is None or match["version"] == "ff":
        return None
    if match["version"] == "00" and match["rest"]:
        return None
    if match["rest"] and not match["rest"].startswith("-"):
        return None
    if set(match["trace_id"]) == {"0"} or set(match["parent_id"]) == {"0"}:
        return None
    return match["trace_id"]


def route_of(request: Request) -> str:
    """Return the URL pattern that matched, as ``/api/runs/{id}/``."""
    match = request.resolver_match
    if match is None or not match.route:
        return str(request.path)
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", match.route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    route = route.replace("^", "").replace("\\Z", "").replace("$", "")
    return "/" + route.lstrip("/")


# --- the decorator ----------------------------------------------------------


IDEMPOTENCY_RESPONSES: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(
        description=(
            "Invalid input, or an Idempotency-Key header that is malformed "
            "or missing where the endpoint requires one."
        )
    ),
    409: OpenApiResponse(
        description=(
            "A request with the same Idempotency-Key is still in progress; "
            "retry after the Retry-After header's seconds."
        )
    ),
    422: OpenApiResponse(
        description=(
            "The Idempotency-Key was already used with a different method, "
            "path or body."
        )
    ),
}


def _key_parameter(required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        HEADER,
        OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        required=required,
        description=(
            "A unique client value of 1 to 255 printable ASCII characters, "
            'bare or quoted ("abc"). A retry with the same key and the same '
            "request gets the stored response with Idempotent-Replayed: true "
            "and does not execute again. Keys are scoped to the user and the "
            "endpoint and expire after IDEMPOTENCY_TTL_SECONDS."
        ),
    )


# Attribute set on a request while a decorated handler handles it.
_ACTIVE = "_idempotency_active"


@dataclass(frozen=True)
class _Options:
    required: bool
    atomic: bool
    lease_seconds: float | None
    run_id_field: str | None


@dataclass(frozen=True)
class _Request:
    """The scope, fingerprint and trace id of one keyed request."""

    user: Any
    principal: str
    key: str
    method: str
    route: str
    path: str
    fingerprint: str
    trace_id: str | None

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.route}"

    def scope(self) -> dict[str, str]:
        return {
            "principal": self.principal,
            "key": self.key,
            "method": self.method,
            "route": self.route,
        }


@dataclass(frozen=True)
class _Claim:
    pk: int
    token: uuid.UUID


def idempotent(
    *,
    required: bool = False,
    atomic: bool = True,
    lease_seconds: float | None = None,
    run_id_field: str | None = None,
) -> Callable[[DecoratedHandler], DecoratedHandler]:
    """Make a DRF handler honour the ``Idempotency-Key`` header.

    ``required`` rejects a request without a key with 400. ``atomic=False``
    is for views whose effects are outside this database (see the module
    docstring). ``lease_seconds`` must exceed the view's longest run, or a
    retry may take the claim over while the first request still runs; it
    defaults to IDEMPOTENCY_LEASE_SECONDS. ``run_id_field`` names the field
    of a 2xx body that holds the id of the saga run the request created.
    """
    options = _Options(required, atomic, lease_seconds, run_id_field)

    def decorate(handler: DecoratedHandler) -> DecoratedHandler:
        @functools.wraps(handler)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Any:
            # A decorated handler that calls another one (partial_update
            # calls update) must not claim the same key a second time.
            if getattr(request, _ACTIVE, False):
                return handler(view, request, *args, **kwargs)
            setattr(request, _ACTIVE, True)
            try:
                return _handle(view, handler, request, args, kwargs, options)
            finally:
                setattr(request, _ACTIVE, False)

        extend_schema(parameters=[_key_parameter(required)])(wrapper)
        return cast(DecoratedHandler, wrapper)

    return decorate


def _handle(
    view: Any,
    handler: Handler,
    request: Request,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: _Options,
) -> HttpResponseBase:
    raw = request.headers.get(HEADER)
    if raw is None:
        if options.required:
            return _missing_key(request)
        return handler(view, request, *args, **kwargs)
    try:
        key = parse_key(raw)
    except InvalidKey as exc:
        return _invalid_key(raw, exc)
    if not request.user or not request.user.is_authenticated:
        # Every keyed endpoint needs a login anyway, and rejecting here means
        # anonymous callers can never share one scope.
        raise NotAuthenticated()

    keyed = _Request(
        user=request.user,
        principal=f"user:{request.user.pk}",
        key=key,
        method=request.method or "",
        route=route_of(request),
        path=request.path,
        fingerprint=fingerprint(request.method or "", request.path, request.data),
        trace_id=trace_id_from(request),
    )
    outcome = _claim(keyed, _lease(options))
    if not isinstance(outcome, _Claim):
        return outcome
    return _execute(view, handler, request, args, kwargs, keyed, outcome, options)


def _lease(options: _Options) -> timedelta:
    seconds = options.lease_seconds
    if seconds is None:
        seconds = float(settings.IDEMPOTENCY_LEASE_SECONDS)
    return timedelta(seconds=seconds)


# --- steps 2 and 3: claim, or respond from the existing record --------------


def _claim(keyed: _Request, lease: timedelta) -> _Claim | HttpResponseBase:
    """Claim the key, or return the 409, 422 or replay to send instead."""
    for _ in range(CLAIM_ATTEMPTS):
        now = timezone.now()
        token = uuid.uuid4()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    **keyed.scope(), **_claim_fields(keyed, token, now, lease)
                )
        except IntegrityError:
            pass
        else:
            logger.debug("key=%s %s claimed", keyed.key, keyed.endpoint)
            return _Claim(record.pk, token)

        existing = IdempotencyRecord.objects.filter(**keyed.scope()).first()
        if existing is None:
            continue  # released by its request after our INSERT failed
        if _is_claimable(existing, now):
            if _take_over(existing, keyed, token, now, lease):
                return _Claim(existing.pk, token)
            continue
        if existing.fingerprint != keyed.fingerprint:
            return _reused_key(keyed)
        if existing.status == IdempotencyRecord.Status.IN_PROGRESS:
            return _in_progress(keyed, existing.locked_until - now)
        logger.info("key=%s %s replayed", keyed.key, keyed.endpoint)
        return _replay(existing)

    logger.warning(
        "key=%s %s claim contended; returning 409", keyed.key, keyed.endpoint
    )
    return _in_progress(keyed, timedelta(seconds=1))


def _claim_fields(
    keyed: _Request, token: uuid.UUID, now: datetime, lease: timedelta
) -> dict[str, Any]:
    ttl = timedelta(seconds=float(settings.IDEMPOTENCY_TTL_SECONDS))
    return {
        "user": keyed.user,
        "path": keyed.path[:2048],
        "fingerprint": keyed.fingerprint,
        "trace_id": keyed.trace_id,
        "status": IdempotencyRecord.Status.IN_PROGRESS,
        "claim_token": token,
        "created_at": now,
        "locked_until": now + lease,
        "expires_at": now + ttl,
    }


def _is_claimable(record: IdempotencyRecord, now: datetime) -> bool:
    if record.expires_at <= now:
        return True
    return (
        record.status == IdempotencyRecord.Status.IN_PROGRESS
        and record.locked_until <= now
    )


def _take_over(
    record: IdempotencyRecord,
    keyed: _Request,
    token: uuid.UUID,
    now: datetime,
    lease: timedelta,
) -> bool:
    """Claim an expired or abandoned record, unless another request did."""
    claimable = Q(expires_at__lte=now) | Q(
        status=IdempotencyRecord.Status.IN_PROGRESS, locked_until__lte=now
    )
    changed = IdempotencyRecord.objects.filter(
        claimable, pk=record.pk, claim_token=record.claim_token
    ).update(
        **_claim_fields(keyed, token, now, lease),
        response_status=None,
        response_headers={},
        response_body="",
        run_id=None,
        completed_at=None,
    )
    if changed != 1:
        return False
    if record.status == IdempotencyRecord.Status.IN_PROGRESS:
        logger.warning(
            "key=%s %s claim abandoned since %s taken over",
            keyed.key,
            keyed.endpoint,
            record.locked_until.isoformat(),
        )
    return True


def _replay(record: IdempotencyRecord) -> HttpResponse:
    headers = record.response_headers or {}
    response = HttpResponse(
        record.response_body.encode(),
        status=record.response_status or 200,
        content_type=headers.get("Content-Type", "application/json"),
    )
    if headers.get("Location"):
        response["Location"] = headers["Location"]
    response["Idempotent-Replayed"] = "true"
    return response


# --- steps 4 and 5: execute and complete, or release ------------------------


class _ServerError(Exception):
    def __init__(self, response: HttpResponseBase) -> None:
        super().__init__(response.status_code)
        self.response = response


class _ClaimLost(Exception):
    pass


def _execute(
    view: Any,
    handler: Handler,
    request: Request,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    keyed: _Request,
    claim: _Claim,
    options: _Options,
) -> HttpResponseBase:
    """Run the view and store its response with the claim, or release it."""

    def run_and_complete() -> HttpResponseBase:
        response = _call_view(view, handler, request, args, kwargs, options.atomic)
        if response.status_code >= 500:
            raise _ServerError(response)
        _complete(claim, response, options.run_id_field)
        return response

    try:
        if options.atomic:
            with transaction.atomic():
                return run_and_complete()
        return run_and_complete()
    except _ServerError as error:
        _release(claim, keyed, f"HTTP {error.response.status_code}")
        return error.response
    except _ClaimLost:
        logger.warning(
            "key=%s %s lease passed and the claim was taken over; rolled back",
            keyed.key,
            keyed.endpoint,
        )
        return _in_progress(keyed, timedelta(seconds=1))
    except BaseException as exc:
        _release(claim, keyed, type(exc).__name__)
        raise


def _call_view(
    view: Any,
    handler: Handler,
    request: Request,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    savepoint: bool,
) -> HttpResponseBase:
    """Return the view's response, turning API exceptions into responses.

    DRF would turn them into responses after this wrapper returns, but doing
    it here lets a 4xx be stored. An exception DRF does not handle propagates.
    """
    try:
        if savepoint:
            with transaction.atomic():
                return handler(view, request, *args, **kwargs)
        return handler(view, request, *args, **kwargs)
    except Exception as exc:
        response: HttpResponseBase = view.handle_exception(exc)
        return response


def _complete(
    claim: _Claim, response: HttpResponseBase, run_id_field: str | None
) -> None:
    content_type, body = _rendered(response)
    headers = {"Content-Type": content_type}
    if response.get("Location"):
        headers["Location"] = response["Location"]
    run_id = None
    if run_id_field and 200 <= response.status_code < 300:
        data = getattr(response, "data", None)
        run_id = data.get(run_id_field) if isinstance(data, dict) else None

    now = timezone.now()
    changed = IdempotencyRecord.objects.filter(
        pk=claim.pk,
        claim_token=claim.token,
        status=IdempotencyRecord.Status.IN_PROGRESS,
    ).update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=response.status_code,
        response_headers=headers,
        response_body=body,
        run_id=run_id,
        completed_at=now,
        locked_until=now,
    )
    if changed != 1:
        raise _ClaimLost()


def _rendered(response: HttpResponseBase) -> tuple[str, str]:
    """Return the content type and body text a replay must send."""
    if isinstance(response, Response):
        data = response.data
        body = b"" if data is None else JSONRenderer().render(data)
        return response.content_type or "application/json", body.decode()
    if isinstance(response, HttpResponse):
        content_type = response.get("Content-Type", "application/json")
        return content_type, response.content.decode(errors="replace")
    # NOTE: a streaming response is stored without its body; no keyed
    # endpoint streams today.
    return response.get("Content-Type", "application/json"), ""


def _release(claim: _Claim, keyed: _Request, reason: str) -> None:
    deleted, _ = IdempotencyRecord.objects.filter(
        pk=claim.pk,
        claim_token=claim.token,
        status=IdempotencyRecord.Status.IN_PROGRESS,
    ).delete()
    logger.info(
        "key=%s %s released after %s (deleted=%s)",
        keyed.key,
        keyed.endpoint,
        reason,
        deleted,
    )


# --- error responses ---------------------------------------------------------


def _shown(value: str) -> str:
    if len(value) <= SHOWN_VALUE_LENGTH:
        return value
    cut = f"cut at {SHOWN_VALUE_LENGTH} of {len(value)} characters"
    return f"{value[:SHOWN_VALUE_LENGTH]}... [{cut}]"


def _missing_key(request: Request) -> Response:
    endpoint = f"{request.method} {route_of(request)}"
    return problem(
        400,
        "Missing Idempotency-Key header.",
        f"{endpoint} requires an {HEADER} header: send a unique value of 1 to "
        f"{KEY_MAX_LENGTH} characters, such as a UUID, and send the same value "
        "again when you retry this request.",
        "idempotency_key_missing",
        errors=[
            {
                "field": HEADER,
                "code": "required",
                "message": "This header is required.",
            }
        ],
    )


def _invalid_key(raw: str, exc: InvalidKey) -> Response:
    shown = _shown(raw)
    return problem(
        400,
        "Invalid Idempotency-Key header.",
        f"The {HEADER} header {exc.rule}: got {shown!r}.",
        "idempotency_key_invalid",
        errors=[
            {
                "field": HEADER,
                "code": exc.code,
                "message": f"The header {exc.rule}.",
                "value": shown,
            }
        ],
    )


def _reused_key(keyed: _Request) -> Response:
    logger.info("key=%s %s reused with another request", keyed.key, keyed.endpoint)
    return problem(
        422,
        "Idempotency-Key reused with a different request.",
        f"The {HEADER} {_shown(keyed.key)!r} was already used for "
        f"{keyed.endpoint} with a different path or body. Send a new key "
        "for a different request.",
        "idempotency_key_reused",
    )


def _in_progress(keyed: _Request, remaining: timedelta) -> Response:
    cap = float(settings.IDEMPOTENCY_RETRY_AFTER_SECONDS)
    seconds = max(1, math.ceil(min(remaining.total_seconds(), cap)))
    logger.info("key=%s %s still in progress", keyed.key, keyed.endpoint)
    return problem(
        409,
        "Request with this Idempotency-Key in progress.",
        f"A request with {HEADER} {_shown(keyed.key)!r} to {keyed.endpoint} is "
        f"still in progress. Retry in {seconds} s to get its response.",
        "idempotency_key_in_use",
        headers={"Retry-After": str(seconds)},
    )


# --- keys that saga steps send downstream -----------------------------------


def record_downstream_key(
    run_id: Any,
    step_name: str,
    part: str,
    target: str,
    key: str,
    status_code: int | None,
    sent_at: datetime,
) -> None:
    """Store that a step sent ``key`` to ``target``, once per key.

    A retry or redelivery of the step sends the same key again, which only
    bumps ``sends``, the last send time and the last status code.
    """
    repeat = {
        "last_sent_at": sent_at,
        "last_status_code": status_code,
        "sends": F("sends") + 1,
    }
    if DownstreamKey.objects.filter(key=key).update(**repeat):
        return
    try:
        with transaction.atomic():
            DownstreamKey.objects.create(
                run_id=run_id,
                step_name=step_name,
                part=part,
                target=target,
                key=key,
                first_sent_at=sent_at,
                last_sent_at=sent_at,
                last_status_code=status_code,
            )
    except IntegrityError:
        # Another worker with a stale lease sent the same key at the same
        # moment. Its row exists now, so this send is counted on it.
        DownstreamKey.objects.filter(key=key).update(**repeat)
