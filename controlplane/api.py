"""Shared pieces of the REST API: parser, pagination, serializer mixin."""

from collections.abc import Mapping
from typing import Any

from django.db import models
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


class StrictStringMixin(serializers.Field):
    """Reject JSON numbers and booleans where a text field expects a string.

    DRF's text fields turn ``5`` into ``"5"``, so a client that sends the
    wrong type would never learn it. These fields return 400 with the rule
    ``not_a_string``.
    """

    default_error_messages = {"not_a_string": "Must be a string, not {kind}."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string", kind=type(data).__name__)
        return super().to_internal_value(data)


class StrictCharField(StrictStringMixin, serializers.CharField):
    """A CharField that accepts only strings."""


class StrictSlugField(StrictStringMixin, serializers.SlugField):
    """A SlugField that accepts only strings."""


class StrictRegexField(StrictStringMixin, serializers.RegexField):
    """A RegexField that accepts only strings."""


class StrictURLField(StrictStringMixin, serializers.URLField):
    """A URLField that accepts only strings."""


class StrictSlugRelatedField(StrictStringMixin, serializers.SlugRelatedField):
    """A SlugRelatedField that looks up strings only."""


class RejectUnknownFieldsMixin(serializers.Serializer):
    """Reject request fields that the serializer does not accept.

    Unknown fields, at the top or inside a nested serializer that uses
    this mixin too, are reported together with every other error of the
    body, including those of ``validate()``: the rest of the body is
    validated without them. ``accepted_fields``, when set, narrows the
    accepted names to fewer than the declared fields, for example to leave
    out read-only ones.
    """

    accepted_fields: frozenset[str] | None = None
    # Used by ModelSerializer subclasses: their text columns take strings
    # only, like the fields declared by hand.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.URLField: StrictURLField,
    }

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if not isinstance(data, Mapping):
            return super().run_validation(data)
        known, errors = self.split_unknown(data)
        if not errors:
            return super().run_validation(data)
        try:
            super().run_validation(known)
        except ValidationError as exc:
            detail = exc.detail
            if not isinstance(detail, dict):
                detail = {"non_field_errors": detail}
            errors = _merge_errors(detail, errors)
        raise ValidationError(errors)

    def split_unknown(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        """Return the known part of ``data`` and errors naming the rest."""
        accepted = self.accepted_fields or set(self.fields)
        known: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, value in data.items():
            if name not in accepted:
                errors[name] = [
                    ErrorDetail("This field is not known.", code="unknown_field")
                ]
                continue
            field = self.fields.get(name)
            if isinstance(field, RejectUnknownFieldsMixin) and isinstance(
                value, Mapping
            ):
                value, nested = field.split_unknown(value)
                if nested:
                    errors[name] = nested
            known[name] = value
        return known, errors


def _merge_errors(first: Any, second: Any) -> Any:
    if isinstance(first, dict) and isinstance(second, dict):
        merged = dict(first)
        for key, value in second.items():
            merged[key] = _merge_errors(merged[key], value) if key in merged else value
        return merged
    if isinstance(first, list) and isinstance(second, list):
        return [*first, *second]
    return second


def check_query_params(request: Any, allowed: set[str]) -> None:
    """Reject query parameters a list does not know, or that come twice.

    A typing error in a filter name would otherwise return the unfiltered
    list, and of a repeated parameter only the last value would count.
    """
    errors: dict[str, list[ErrorDetail]] = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if name not in allowed:
            expected = (
                f"expected one of {', '.join(sorted(allowed))}"
                if allowed
                else "this endpoint takes none"
            )
            errors[name] = [
                ErrorDetail(
                    f"Is not a parameter of this endpoint; {expected}.",
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


class NoFieldsSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """The body of an action that takes no fields: empty, {} or nothing."""


def check_empty_body(request: Request) -> None:
    """Reject a body with fields, for actions such as cancel or reset.

    Without this a client that sent a field it expected to matter (a
    reason, a force flag) would see the action done as if it had not.
    """
    data = request.data
    if data in (None, "") or (hasattr(data, "keys") and not list(data.keys())):
        return
    NoFieldsSerializer(data=data).is_valid(raise_exception=True)
