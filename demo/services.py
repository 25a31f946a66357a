"""Operations of the four demo services, their state summaries and seed data.

Every operation runs in a transaction of its own (a savepoint when the
caller already opened one), so a ``ServiceError`` rolls back whatever the
operation wrote before it failed.

Each applied change is also stored as an ``AppliedEffect`` row, and the
state summaries count references with more than one effect of one kind,
which must stay 0 however often a saga retries.
"""

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum

from controlplane import outbox
from demo import events, faults
from demo.models import (
    SERVICES,
    AppliedEffect,
    BusinessRecord,
    FaultSetting,
    IdempotencyKey,
    Order,
    Payment,
    Product,
    Reservation,
    Shipment,
)
from sagas.models import ParticipantBranch

logger = logging.getLogger(__name__)

# Stock of the seeded products; "sku-empty" makes every reservation fail.
SEED_STOCK = {
    "sku-1": 1000,
    "sku-2": 1000,
    "sku-3": 1000,
    "sku-4": 1000,
    "sku-5": 1000,
    "sku-empty": 0,
}

RECORD_MODELS: dict[str, type[BusinessRecord]] = {
    "order": Order,
    "inventory": Reservation,
    "payment": Payment,
    "shipping": Shipment,
}

# The services with Try-Confirm-Cancel endpoints (see demo.tcc).
TCC_SERVICES = ("order", "inventory", "payment")

# Status that each service's compensation leaves behind, for error messages.
COMPENSATION_NAMES = {
    "order": "cancelled",
    "inventory": "released",
    "payment": "refunded",
    "shipping": "cancelled",
}

Record = TypeVar("Record", bound=BusinessRecord)


class ServiceError(Exception):
    """A business failure that a demo service returns as a 4xx problem."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors = errors


# --- shared steps -----------------------------------------------------------


def _record_effect(service: str, reference: str, kind: str) -> None:
    AppliedEffect.objects.create(service=service, reference=reference, kind=kind)
    logger.info("service=%s reference=%s %s applied", service, reference, kind)


def _create(model: type[Record], service: str, reference: str, **fields: Any) -> Record:
    """Insert the action's row, or raise 409 when the reference exists.

    The unique constraint on ``reference`` decides, so two simultaneous
    actions with one reference can never both insert.
    """
    try:
        with transaction.atomic():
            return model._default_manager.create(reference=reference, **fields)
    except IntegrityError:
        existing = model._default_manager.filter(reference=reference).first()
    if existing is not None and existing.compensated_before_action:
        raise ServiceError(
            409,
            "already_compensated",
            "Already compensated.",
            f"Reference {reference!r} was {COMPENSATION_NAMES[service]} before "
            "its action arrived, so the action is rejected and nothing is applied.",
        )
    raise ServiceError(
        409,
        "duplicate_reference",
        "Duplicate reference.",
        f"The {service} service already has reference {reference!r}; an action "
        "is applied once per reference. Retry with the same Idempotency-Key to "
        "get the first response.",
    )


def _compensate(
    model: type[Record],
    service: str,
    reference: str,
    final_status: str,
    undo: Callable[[Record], None],
) -> Record:
    """Move a record to ``final_status`` once, remembering unknown references.

    A reference never seen gets a row in ``final_status`` with
    ``compensated_before_action`` set, so a late action fails with 409. A
    record already in ``final_status`` is returned unchanged.
    """
    record = (
        model._default_manager.select_for_update().filter(reference=reference).first()
    )
    if record is None:
        try:
            with transaction.atomic():
                record = model._default_manager.create(
                    reference=reference,
                    status=final_status,
                    compensated_before_action=True,
                )
        except IntegrityError:
            # The action committed between our read and our insert.
            record = model._default_manager.select_for_update().get(reference=reference)
        else:
            _record_effect(service, reference, final_status)
            return record

    if record.status == final_status:
        return record
    undo(record)
    record.status = final_status
    record.save(update_fields=["status", "updated_at"])
    _record_effect(service, reference, final_status)
    return record


def _no_undo(record: BusinessRecord) -> None:
    """Leave other tables alone: the status change is the whole undo."""


def get_record(service: str, reference: str) -> BusinessRecord:
    """Return a service's record of a reference, or raise 404."""
    record = RECORD_MODELS[service]._default_manager.filter(reference=reference).first()
    if record is None:
        raise ServiceError(
            404,
            "not_found",
            "Not found.",
            f"The {service} service has no record with reference {reference!r}.",
        )
    return record


# --- order ------------------------------------------------------------------


@transaction.atomic
def create_order(
    reference: str, customer_id: str, product_id: str, quantity: int, amount: Decimal
) -> Order:
    order = _create(
        Order,
        "order",
        reference,
        status=Order.Status.PENDING,
        customer_id=customer_id,
        product_id=product_id,
        quantity=quantity,
        amount=amount,
    )
    _record_effect("order", reference, "create")
    return order


@transaction.atomic
def place_order(
    reference: str, customer_id: str, product_id: str, quantity: int, amount: Decimal
) -> Order:
    """Create an order and publish OrderCreated, which starts the choreography."""
    order = create_order(reference, customer_id, product_id, quantity, amount)
    payload = {
        "customer_id": customer_id,
        "product_id": product_id,
        "quantity": quantity,
        "amount": str(amount),
    }
    outbox.emit("order", events.ORDER_CREATED, reference, payload)
    return order


@transaction.atomic
def confirm_order(reference: str) -> Order:
    """Confirm a pending order; raise 404 if unknown and 409 if cancelled."""
    order = Order.objects.select_for_update().filter(reference=reference).first()
    if order is None:
        raise ServiceError(
            404,
            "not_found",
            "Not found.",
            f"The order service has no order with reference {reference!r}.",
        )
    if order.status == Order.Status.CANCELLED:
        raise ServiceError(
            409,
            "order_cancelled",
            "Order cancelled.",
            f"Order {reference!r} is cancelled and cannot be confirmed.",
        )
    if order.status == Order.Status.PENDING:
        order.status = Order.Status.CONFIRMED
        order.save(update_fields=["status", "updated_at"])
        _record_effect("order", reference, "confirm")
    return order


@transaction.atomic
def cancel_order(reference: str) -> Order:
    # A confirmed order can be cancelled too: a saga whose confirmation timed
    # out after it was applied compensates the order it created.
    return _compensate(Order, "order", reference, Order.Status.CANCELLED, _no_undo)


# --- inventory --------------------------------------------------------------


@transaction.atomic
def reserve(reference: str, product_id: str, quantity: int) -> Reservation:
    """Reserve stock; raise 422 for an unknown product, 409 when short.

    The stock UPDATE takes units only while enough are available, in one
    statement, so simultaneous reservations can never oversell.
    """
    if not Product.objects.filter(product_id=product_id).exists():
        raise unknown_product(product_id)
    reservation = _create(
        Reservation,
        "inventory",
        reference,
        status=Reservation.Status.RESERVED,
        product_id=product_id,
        quantity=quantity,
    )

    take_stock(product_id, quantity, "reserved")
    _record_effect("inventory", reference, "reserve")
    return reservation


def take_stock(product_id: str, quantity: int, into: str) -> None:
    """Move units from available to ``into`` (reserved or held), or raise 409.

    The UPDATE takes units only while enough are available, in one
    statement, so simultaneous requests can never oversell.
    """
    moved = Product.objects.filter(
        product_id=product_id, available__gte=quantity
    ).update(available=F("available") - quantity, **{into: F(into) + quantity})
    if not moved:
        available = Product.objects.get(product_id=product_id).available
        raise ServiceError(
            409,
            "insufficient_stock",
            "Insufficient stock.",
            f"Product {product_id!r} has {available} units available, but "
            f"{quantity} were requested. Nothing was {into}.",
        )


def unknown_product(product_id: str) -> ServiceError:
    """Return the 422 for a product_id that the inventory does not stock."""
    return ServiceError(
        422,
        "unknown_product",
        "Unknown product.",
        f"No product has product_id {product_id!r}.",
        errors=[
            {
                "field": "product_id",
                "code": "does_not_exist",
                "message": f"No product has product_id {product_id!r}.",
                "value": product_id,
            }
        ],
    )


def _return_stock(reservation: Reservation) -> None:
    Product.objects.filter(product_id=reservation.product_id).update(
        available=F("available") + reservation.quantity,
        reserved=F("reserved") - reservation.quantity,
    )


@transaction.atomic
def release(reference: str) -> Reservation:
    return _compensate(
        Reservation,
        "inventory",
        reference,
        Reservation.Status.RELEASED,
        _return_stock,
    )


# --- payment ----------------------------------------------------------------


@transaction.atomic
def charge(reference: str, customer_id: str, amount: Decimal) -> Payment:
    payment = _create(
        Payment,
        "payment",
        reference,
        status=Payment.Status.CHARGED,
        customer_id=customer_id,
        amount=amount,
    )
    _record_effect("payment", reference, "charge")
    return payment


@transaction.atomic
def refund(reference: str) -> Payment:
    return _compensate(Payment, "payment", reference, Payment.Status.REFUNDED, _no_undo)


# --- shipping ---------------------------------------------------------------


@transaction.atomic
def schedule_shipment(
    reference: str, customer_id: str, product_id: str, quantity: int
) -> Shipment:
    shipment = _create(
        Shipment,
        "shipping",
        reference,
        status=Shipment.Status.SCHEDULED,
        customer_id=customer_id,
        product_id=product_id,
        quantity=quantity,
    )
    _record_effect("shipping", reference, "schedule")
    return shipment


@transaction.atomic
def cancel_shipment(reference: str) -> Shipment:
    return _compensate(
        Shipment, "shipping", reference, Shipment.Status.CANCELLED, _no_undo
    )


# --- state summaries --------------------------------------------------------


def service_state(service: str) -> dict[str, Any]:
    """Summarise one service's records, for tests and the faults page.

    ``effects_applied`` counts stored effects and ``duplicate_effects`` the
    (reference, kind) pairs applied more than once.
    """
    model = RECORD_MODELS[service]
    statuses = model._meta.get_field("status").choices or []
    counts = dict(
        model._default_manager.values_list("status").annotate(n=Count("id")).order_by()
    )
    effects = AppliedEffect.objects.filter(service=service)
    duplicates = (
        effects.values("reference", "kind")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .order_by()
    )
    state: dict[str, Any] = {
        "service": service,
        "by_status": {value: counts.get(value, 0) for value, _ in statuses},
        "total": sum(counts.values()),
        "compensated_before_action": model._default_manager.filter(
            compensated_before_action=True
        ).count(),
        "effects_applied": effects.count(),
        "duplicate_effects": duplicates.count(),
    }
    if service in TCC_SERVICES:
        from demo.tcc import branch_state

        state.update(branch_state(service))
    if service == "inventory":
        state.update(_inventory_state())
    elif service == "payment":
        state.update(_payment_state())
    return state


def _inventory_state() -> dict[str, Any]:
    products = {
        product.product_id: {
            "on_hand": product.on_hand,
            "reserved": product.reserved,
            "held": product.held,
            "available": product.available,
        }
        for product in Product.objects.all()
    }
    return {
        "products": products,
        "total_reserved": sum(p["reserved"] for p in products.values()),
        "total_held": sum(p["held"] for p in products.values()),
        "total_available": sum(p["available"] for p in products.values()),
    }


def _payment_state() -> dict[str, Any]:
    def total(status: str) -> str:
        amount = Payment.objects.filter(status=status).aggregate(s=Sum("amount"))
        return str((amount["s"] or Decimal("0")).quantize(Decimal("0.01")))

    return {
        "charged_total": total(Payment.Status.CHARGED),
        "refunded_total": total(Payment.Status.REFUNDED),
    }


# --- seed and reset ---------------------------------------------------------


@transaction.atomic
def seed_demo_data() -> None:
    """Create the seeded products and the four fault settings if missing.

    Existing rows keep their stock and fault values, so calling it on every
    start changes nothing that is already there.
    """
    for product_id, stock in SEED_STOCK.items():
        Product.objects.get_or_create(
            product_id=product_id, defaults={"available": stock}
        )
    for service in SERVICES:
        FaultSetting.objects.get_or_create(service=service)


@transaction.atomic
def reset_demo_data() -> None:
    """Delete every demo record and key, restore seeded stock, zero faults."""
    for model in RECORD_MODELS.values():
        model._default_manager.all().delete()
    AppliedEffect.objects.all().delete()
    IdempotencyKey.objects.all().delete()
    Product.objects.exclude(product_id__in=SEED_STOCK).delete()
    for product_id, stock in SEED_STOCK.items():
        Product.objects.update_or_create(
            product_id=product_id,
            defaults={"available": stock, "reserved": 0, "held": 0},
        )
    ParticipantBranch.objects.filter(service__in=SERVICES).delete()
    for service in SERVICES:
        FaultSetting.objects.update_or_create(
            service=service, defaults={"error_rate": 0.0, "latency_ms": 0}
        )
    faults.clear_cache()
    logger.info("demo data reset")
