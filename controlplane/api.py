"""Shared pieces of the REST API: parser, pagination, serializer mixin."""

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

# Request bodies nest no deeper than this; the JSON decoder would otherwise
# recurse until Python's stack limit and fail with a 500.
MAX_JSON_DEPTH = 64


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class BoundedJSONParser(JSONParser):
    """Parse JSON and reject bodies nested deeper than MAX_JSON_DEPTH."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        if _depth(data) > MAX_JSON_DEPTH:
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
            )
        return data


class CheckedLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset pagination that rejects bad values instead of ignoring them."""

    max_limit = 500

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> Any:
        errors: dict[str, list[str]] = {}
        for name, minimum in (
            (self.limit_query_param, 1),
            (self.offset_query_param, 0),
        ):
            raw = request.query_params.get(name)
            if raw is None:
                continue
            if not raw.isdigit() or int(raw) < minimum:
                errors[name] = [f"Must be an integer of at least {minimum}."]
            elif name == self.limit_query_param and int(raw) > self.max_limit:
                errors[name] = [f"Must be at most {self.max_limit}."]
        if errors:
            raise ValidationError(errors, code="invalid")
        return super().paginate_queryset(queryset, request, view)


class StrictCharField(serializers.CharField):
    """A text field that rejects JSON numbers and booleans.

    DRF's CharField turns ``5`` into ``"5"``, so a client that sends the
    wrong type would never learn it; this one answers 400 with the rule
    ``not_a_string``.
    """

    default_error_messages = {"not_a_string": "Must be a string, not {kind}."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", kind=type(data).__name__)
        return str(super().to_internal_value(data))


class RejectUnknownFieldsMixin(serializers.Serializer):
    """Reject request fields that the serializer does not accept.

    Unknown fields are reported together with the other fields' errors, so
    one response names every problem of the body. ``accepted_fields``, when
    set, narrows the accepted names to fewer than the declared fields, for
    example to leave out read-only ones.
    """

    accepted_fields: frozenset[str] | None = None

    def to_internal_value(self, data: Any) -> Any:
        accepted = self.accepted_fields or set(self.fields)
        unknown = sorted(set(data) - accepted) if isinstance(data, dict) else []
        errors = {
            name: [ErrorDetail("This field is not known.", code="unknown_field")]
            for name in unknown
        }
        try:
            value = super().to_internal_value(data)
        except ValidationError as exc:
            if not errors:
                raise
            detail = exc.detail
            if not isinstance(detail, dict):
                detail = {"non_field_errors": detail}
            raise ValidationError({**detail, **errors}) from exc
        if errors:
            raise ValidationError(errors)
        return value


def check_query_params(request: Any, allowed: set[str]) -> None:
    """Reject query parameters a list does not know, or that come twice.

    A typing error in a filter name would otherwise return the unfiltered
    list, and of a repeated parameter only the last value would count.
    """
    errors: dict[str, list[ErrorDetail]] = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if name not in allowed:
            errors[name] = [
                ErrorDetail(
                    f"Is not a parameter of this list; expected one of "
                    f"{', '.join(sorted(allowed))}.",
                    code="unknown_field",
                )
            ]
        elif len(values) > 1:
            errors[name] = [
                ErrorDetail(
                    f"Must be given once, got {len(values)} values: {values!r:.200}.",
                    code="multiple_values",
                )
            ]
    if errors:
        raise ValidationError(errors)
