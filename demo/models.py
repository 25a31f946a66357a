"""State of the four demo services, their Idempotency-Key records and faults.

Every business row is addressed by ``reference`` (the saga run id), unique
per service, so that a compensation finds its action without knowing the
action's result and an action can never be applied twice. A compensation
that arrives first stores a row in its final status with
``compensated_before_action`` set, which makes the late action fail.
"""

from django.db import models

SERVICES = ("order", "inventory", "payment", "shipping")
SERVICE_CHOICES = [(name, name) for name in SERVICES]


class BusinessRecord(models.Model):
    """Fields shared by the orders, reservations, payments and shipments."""

    reference = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16)
    compensated_before_action = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.reference} ({self.status})"


class Order(BusinessRecord):
    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        CANCELLED = "cancelled"

    status = models.CharField(max_length=16, choices=Status.choices)
    customer_id = models.CharField(max_length=64, blank=True)
    product_id = models.CharField(max_length=64, blank=True)
    quantity = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)


class Product(models.Model):
    """A stock item; reserved units are still on hand but not available."""

    product_id = models.CharField(max_length=64, unique=True)
    available = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    # Units held by a Try-Confirm-Cancel try: deducted on confirm, made
    # available again on cancel.
    held = models.IntegerField(default=0)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(available__gte=0),
                name="demo_product_available_gte_0",
            ),
            models.CheckConstraint(
                condition=models.Q(reserved__gte=0), name="demo_product_reserved_gte_0"
            ),
            models.CheckConstraint(
                condition=models.Q(held__gte=0), name="demo_product_held_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return self.product_id

    @property
    def on_hand(self) -> int:
        return self.available + self.reserved + self.held


class Reservation(BusinessRecord):
    class Status(models.TextChoices):
        RESERVED = "reserved"
        RELEASED = "released"

    status = models.CharField(max_length=16, choices=Status.choices)
    product_id = models.CharField(max_length=64, blank=True)
    quantity = models.PositiveIntegerField(default=0)


class Payment(BusinessRecord):
    class Status(models.TextChoices):
        CHARGED = "charged"
        REFUNDED = "refunded"

    status = models.CharField(max_length=16, choices=Status.choices)
    customer_id = models.CharField(max_length=64, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)


class Shipment(BusinessRecord):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        CANCELLED = "cancelled"

    status = models.CharField(max_length=16, choices=Status.choices)
    customer_id = models.CharField(max_length=64, blank=True)
    product_id = models.CharField(max_length=64, blank=True)
    quantity = models.PositiveIntegerField(default=0)


class AppliedEffect(models.Model):
    """One state change a demo service applied, kept to prove none repeats.

    ``kind`` is the action (``create``, ``confirm``, ``reserve``, ``charge``,
    ``schedule``) or, for a compensation, the status it set (``cancelled``,
    ``released``, ``refunded``). No unique constraint on purpose: a
    duplicate must be stored so that the state endpoints can count it.
    """

    service = models.CharField(max_length=16, choices=SERVICE_CHOICES)
    reference = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-applied_at", "-id"]
        indexes = [models.Index(fields=["service", "reference", "kind"])]

    def __str__(self) -> str:
        return f"{self.service} {self.kind} {self.reference}"


class IdempotencyKey(models.Model):
    """A demo service's stored response to the first request with a key.

    The row is inserted in the same transaction as the request's effect, so
    a key is either claimed together with its effect or not at all.
    """

    # NOTE: demo keys never expire; only reset_demo_data() deletes them, so
    # the table grows with every saga step until a purge task covers it.

    service = models.CharField(max_length=16, choices=SERVICE_CHOICES)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    content_type = models.CharField(max_length=64, default="application/json")
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "key"], name="demo_idempotency_key_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.key}"


class FaultSetting(models.Model):
    """Faults injected into one demo service's requests.

    ``error_rate`` is the share (0 to 1) of requests that fail with 503 and
    ``latency_ms`` the delay added before each request, in milliseconds.
    """

    service = models.CharField(max_length=16, choices=SERVICE_CHOICES, unique=True)
    error_rate = models.FloatField(default=0.0)
    latency_ms = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service"]

    def __str__(self) -> str:
        return f"{self.service}: {self.error_rate:.2f}, {self.latency_ms} ms"
