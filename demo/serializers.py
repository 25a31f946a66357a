"""Request and response shapes of the demo services and the fault API."""

import math
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from controlplane.api import RejectUnknownFieldsMixin, StrictCharField
from demo.models import FaultSetting, Order, Payment, Reservation, Shipment

REFERENCE_MAX_LENGTH = 64
# References appear in URL paths, so they may not contain "/" or spaces.
REFERENCE_PATTERN = r"^[A-Za-z0-9._:-]+$"
REFERENCE_RULE = "must contain only letters, digits, '.', '_', ':' or '-'"
MAX_QUANTITY = 1_000_000
MAX_LATENCY_MS = 60_000

reference_validator = RegexValidator(
    REFERENCE_PATTERN, message=f"Reference {REFERENCE_RULE}.", code="invalid_reference"
)


def reference_field() -> serializers.CharField:
    return StrictCharField(
        max_length=REFERENCE_MAX_LENGTH, validators=[reference_validator]
    )


def id_field() -> serializers.CharField:
    return StrictCharField(max_length=64)


def quantity_field() -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)


def amount_field() -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01")
    )


class ReferenceSerializer(serializers.Serializer):
    """A reference taken from the URL path of a compensation or lookup."""

    reference = reference_field()


class CreateOrderSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reference = reference_field()
    customer_id = id_field()
    product_id = id_field()
    quantity = quantity_field()
    amount = amount_field()


class ReserveSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reference = reference_field()
    product_id = id_field()
    quantity = quantity_field()


class ChargeSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reference = reference_field()
    customer_id = id_field()
    amount = amount_field()


class ScheduleShipmentSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reference = reference_field()
    customer_id = id_field()
    product_id = id_field()
    quantity = quantity_field()


RECORD_FIELDS = [
    "reference",
    "status",
    "compensated_before_action",
    "created_at",
    "updated_at",
]


class OrderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Order
        fields = [*RECORD_FIELDS, "customer_id", "product_id", "quantity", "amount"]


class ReservationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reservation
        fields = [*RECORD_FIELDS, "product_id", "quantity"]


class PaymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Payment
        fields = [*RECORD_FIELDS, "customer_id", "amount"]


class ShipmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Shipment
        fields = [*RECORD_FIELDS, "customer_id", "product_id", "quantity"]


RECORD_SERIALIZERS: dict[str, type[serializers.ModelSerializer]] = {
    "order": OrderSerializer,
    "inventory": ReservationSerializer,
    "payment": PaymentSerializer,
    "shipping": ShipmentSerializer,
}


class RateField(serializers.FloatField):
    """A float that rejects booleans, NaN and infinities."""

    def to_internal_value(self, data: Any) -> float:
        # float(True) is 1.0, and a NaN would pass both range checks because
        # every comparison with it is false.
        if isinstance(data, bool):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class FaultSettingSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A service's injected faults: share of 503 failures and added latency."""

    error_rate = RateField(
        min_value=0.0,
        max_value=1.0,
        help_text="Share of requests that fail with 503, from 0 (none) to 1 (all).",
    )
    latency_ms = serializers.IntegerField(
        min_value=0,
        max_value=MAX_LATENCY_MS,
        help_text="Delay added before each request, in milliseconds.",
    )

    accepted_fields = frozenset({"error_rate", "latency_ms"})

    class Meta:
        model = FaultSetting
        fields = ["service", "error_rate", "latency_ms", "updated_at"]
        read_only_fields = ["service", "updated_at"]
