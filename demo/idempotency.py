"""``Idempotency-Key`` handling of the demo services' effectful POSTs.

A demo service stores its keys per service in ``IdempotencyKey`` and claims
a key by INSERTing its row in the same transaction as the request's effect:

- first request with a key: the effect and the stored response commit
  together, or neither does (an exception rolls both back, so the key is
  free for a retry);
- same key, same method, path and body: the stored status and body are
  returned with ``Idempotent-Replayed: true`` and nothing runs again;
- same key, another request: 422; a malformed key (empty, over 255
  characters, not printable ASCII): 400.

Two simultaneous requests with one key cannot both run. On PostgreSQL the
second INSERT waits for the first transaction and then fails on the unique
constraint. On SQLite every write transaction starts IMMEDIATE, so the
second request starts only after the first one committed.
"""

import logging
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.errors import problem
from controlplane.idempotency import (
    HEADER,
    SHOWN_VALUE_LENGTH,
    InvalidKey,
    fingerprint,
    parse_key,
)
from demo.models import IdempotencyKey
from demo.services import ServiceError

logger = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"

Operation = Callable[[], Response]


def run_once(request: Request, service: str, operation: Operation) -> Response:
    """Run ``operation`` at most once per ``Idempotency-Key`` of ``service``.

    ``operation`` applies the effect and returns the response; a
    ``ServiceError`` it raises becomes a problem+json response that is
    stored like any other.
    """
    raw = request.headers.get(HEADER)
    if raw is None:
        with transaction.atomic():
            return _respond(service, operation)
    try:
        key = parse_key(raw)
    except InvalidKey as exc:
        return _invalid_key(raw, exc)
    method = request.method or "POST"
    request_fingerprint = fingerprint(method, request.path, request.data)

    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    service=service, key=key, fingerprint=request_fingerprint
                )
        except IntegrityError:
            return _existing(service, key, request_fingerprint)

        response = _respond(service, operation)
        record.status_code = response.status_code
        record.content_type = _content_type(response)
        record.response_body = response.data
        record.save(update_fields=["status_code", "content_type", "response_body"])
    logger.debug("service=%s key=%s stored %s", service, key, response.status_code)
    return response


def _respond(service: str, operation: Operation) -> Response:
    try:
        return operation()
    except ServiceError as exc:
        logger.info("service=%s rejected with %s: %s", service, exc.status, exc.code)
        return problem(exc.status, exc.title, exc.detail, exc.code, errors=exc.errors)


def _content_type(response: Response) -> str:
    # problem() sets the media type as an attribute; a plain Response has
    # none until it is rendered.
    return str(getattr(response, "content_type", None) or "application/json")


def _existing(service: str, key: str, request_fingerprint: str) -> Response:
    """Return the replay or the 422 for a key that is already stored."""
    record = IdempotencyKey.objects.get(service=service, key=key)
    if record.fingerprint != request_fingerprint:
        logger.info("service=%s key=%s reused with another request", service, key)
        return problem(
            422,
            "Idempotency-Key reused with a different request.",
            f"The {HEADER} {_shown(key)!r} was already used on the {service} "
            "service with a different method, path or body. Send a new key "
            "for a different request.",
            "idempotency_key_reused",
        )

    logger.info("service=%s key=%s replayed", service, key)
    response = Response(
        record.response_body,
        status=record.status_code,
        headers={REPLAYED_HEADER: "true"},
    )
    response.content_type = record.content_type
    return response


def _invalid_key(raw: str, exc: InvalidKey) -> Response:
    return problem(
        400,
        "Invalid Idempotency-Key header.",
        f"The {HEADER} header {exc.rule}: got {_shown(raw)!r}.",
        "idempotency_key_invalid",
        errors=[
            {
                "field": HEADER,
                "code": exc.code,
                "message": f"The {HEADER} header {exc.rule}.",
                "value": _shown(raw),
            }
        ],
    )


def _shown(value: str) -> str:
    if len(value) <= SHOWN_VALUE_LENGTH:
        return value
    return value[:SHOWN_VALUE_LENGTH] + "..."
