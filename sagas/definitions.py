"""The shape of a saga definition: its input fields, steps and templates.

Input fields are declared as data (``{"name": "quantity", "type": "integer",
"min_value": 1}``) and checked by a DRF serializer built from them, so a bad
run input gets the same field, rule and message as any other API error.

Step bodies and paths are templates over the run: ``"{{input.quantity}}"``
as a whole string is replaced by the value with its type kept, and
``"/orders/{{run.id}}/cancel/"`` interpolates the value as text. The
context holds ``run.id``, ``input.<field>`` and ``steps.<name>.output``.
Placeholders are resolved by a few lines here because a full template
language (Jinja, Django templates) would turn every value into text and
could not keep an integer an integer.
"""

import re
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from controlplane.api import StrictCharField

FIELD_TYPES: dict[str, type[serializers.Field]] = {
    "string": StrictCharField,
    "integer": serializers.IntegerField,
    "decimal": serializers.DecimalField,
    "boolean": serializers.BooleanField,
}
FIELD_RULES = {"min_value", "max_value", "max_length", "min_length", "required"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


class TemplateError(ValueError):
    """A placeholder names a value that the run does not have."""


def input_serializer(schema: list[dict[str, Any]]) -> type[serializers.Serializer]:
    """Build a serializer class that validates a run input against a schema."""
    fields: dict[str, serializers.Field] = {}
    for spec in schema:
        kind = FIELD_TYPES[spec["type"]]
        options = {key: spec[key] for key in FIELD_RULES if key in spec}
        if spec["type"] == "decimal":
            options.setdefault("max_digits", 12)
            options["decimal_places"] = spec.get("decimal_places", 2)
            # Decimals travel as strings so no float ever rounds a price.
            options["coerce_to_string"] = True
        if "min_value" in options and spec["type"] == "decimal":
            options["min_value"] = Decimal(str(options["min_value"]))
        fields[spec["name"]] = kind(**options)

    class Meta:
        ref_name = None

    def validate(self: serializers.Serializer, attrs: dict[str, Any]) -> Any:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name: ["This field is not part of the saga's input."]
                    for name in unknown
                },
                code="unknown_field",
            )
        return attrs

    attrs: dict[str, Any] = {**fields, "validate": validate}
    return type("RunInputSerializer", (serializers.Serializer,), attrs)


def validate_input(schema: list[dict[str, Any]], data: Any) -> dict[str, Any]:
    """Return the cleaned input, or raise ValidationError naming each field."""
    if not isinstance(data, dict):
        raise serializers.ValidationError(
            {"input": ["Expected a JSON object of the saga's input fields."]},
            code="invalid",
        )
    serializer = input_serializer(schema)(data=data)
    if not serializer.is_valid():
        raise serializers.ValidationError({"input": serializer.errors})
    return serializer.data


def _resolve(path: str, context: dict[str, Any]) -> Any:
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise TemplateError(f"Template value {{{{{path}}}}} is not defined.")
    return value


def render(template: Any, context: dict[str, Any]) -> Any:
    """Replace the placeholders in a step's path or body with run values."""
    if isinstance(template, dict):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, context) for value in template]
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        return _resolve(whole.group(1), context)
    return _PLACEHOLDER.sub(lambda m: str(_resolve(m.group(1), context)), template)


# The keys a step may have; anything else is a typing error to report.
STEP_KEYS = {
    "name",
    "target",
    "action",
    "compensation",
    "retry",
    "compensation_retry",
    "timeout",
    "on_failure",
}
# The choices of a failed step: undo the steps before it, or stop and
# wait for an operator to retry the step or cancel the run.
ON_FAILURE = ("compensate", "pause")


# The order saga seeded for the demo services. Its references are the run's
# id, so each compensation addresses its action without knowing its result.
ORDER_SAGA: dict[str, Any] = {
    "name": "order",
    "description": (
        "Create an order, reserve stock, charge the payment, schedule the "
        "shipment and confirm the order; on failure undo in reverse order."
    ),
    "input_schema": [
        {
            "name": "customer_id",
            "type": "string",
            "max_length": 64,
            "example": "customer-1",
        },
        {
            "name": "product_id",
            "type": "string",
            "max_length": 64,
            "example": "sku-1",
            "help": "The demo stock has sku-1 to sku-5, and sku-empty with none.",
        },
        {
            "name": "quantity",
            "type": "integer",
            "min_value": 1,
            "max_value": 1000,
            "example": 2,
        },
        {"name": "amount", "type": "decimal", "min_value": "0.01", "example": "19.90"},
    ],
    "steps": [
        {
            "name": "create_order",
            "target": "order",
            "action": {
                "method": "POST",
                "path": "/orders/",
                "body": {
                    "reference": "{{run.id}}",
                    "customer_id": "{{input.customer_id}}",
                    "product_id": "{{input.product_id}}",
                    "quantity": "{{input.quantity}}",
                    "amount": "{{input.amount}}",
                },
            },
            "compensation": {"method": "POST", "path": "/orders/{{run.id}}/cancel/"},
        },
        {
            "name": "reserve_inventory",
            "target": "inventory",
            "action": {
                "method": "POST",
                "path": "/reservations/",
                "body": {
                    "reference": "{{run.id}}",
                    "product_id": "{{input.product_id}}",
                    "quantity": "{{input.quantity}}",
                },
            },
            "compensation": {
                "method": "POST",
                "path": "/reservations/{{run.id}}/release/",
            },
        },
        {
            "name": "charge_payment",
            "target": "payment",
            "action": {
                "method": "POST",
                "path": "/payments/",
                "body": {
                    "reference": "{{run.id}}",
                    "customer_id": "{{input.customer_id}}",
                    "amount": "{{input.amount}}",
                },
            },
            "compensation": {
                "method": "POST",
                "path": "/payments/{{run.id}}/refund/",
            },
        },
        {
            "name": "schedule_shipment",
            "target": "shipping",
            "action": {
                "method": "POST",
                "path": "/shipments/",
                "body": {
                    "reference": "{{run.id}}",
                    "customer_id": "{{input.customer_id}}",
                    "product_id": "{{input.product_id}}",
                    "quantity": "{{input.quantity}}",
                },
            },
            "compensation": {
                "method": "POST",
                "path": "/shipments/{{run.id}}/cancel/",
            },
        },
        {
            "name": "confirm_order",
            "target": "order",
            "action": {"method": "POST", "path": "/orders/{{run.id}}/confirm/"},
            "compensation": None,
        },
    ],
}


# The same order as a choreography: no steps, the services react to each
# other's events (see demo.events) and the run is assembled from them.
ORDER_CHOREOGRAPHY_SAGA: dict[str, Any] = {
    "name": "order-choreography",
    "kind": "choreography",
    "description": (
        "Place an order; inventory, payment, shipping and order then react to "
        "each other's events through their outboxes, and a failure event "
        "makes them release, refund and cancel."
    ),
    "input_schema": ORDER_SAGA["input_schema"],
    "steps": [],
}
