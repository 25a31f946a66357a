"""Try-Confirm-Cancel endpoints' operations of the demo services.

Inventory holds stock on try, deducts it on confirm and makes it available
again on cancel. Payment authorises an amount on try, captures it on
confirm and voids it on cancel. Order creates a pending order on try and
confirms or cancels it in phase two. The branch rules (idempotent confirm
and cancel, a cancel before its try remembered, a late try rejected) come
from ``sagas.participant``.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from demo.models import Order, Product
from demo.services import (
    ServiceError,
    _record_effect,
    create_order,
    take_stock,
    unknown_product,
)
from sagas import participant
from sagas.models import ParticipantBranch


@contextmanager
def _as_service_error() -> Iterator[None]:
    try:
        yield
    except participant.BranchConflict as exc:
        raise ServiceError(409, exc.code, "Transaction conflict.", exc.detail) from exc


def branch_body(branch: participant.Branch) -> dict[str, Any]:
    row = branch.row
    return {
        "service": row.service,
        "transaction_id": row.transaction_id,
        "state": row.state,
        "cancelled_before_try": row.cancelled_before_try,
        "payload": row.payload,
    }


# --- inventory --------------------------------------------------------------


@transaction.atomic
def inventory_try(reference: str, product_id: str, quantity: int) -> dict[str, Any]:
    """Hold stock; 422 for an unknown product, 409 when short or cancelled."""
    if not Product.objects.filter(product_id=product_id).exists():
        raise unknown_product(product_id)
    payload = {"product_id": product_id, "quantity": quantity}
    with _as_service_error():
        branch = participant.begin_try("inventory", reference, payload)

    take_stock(product_id, quantity, "held")
    _record_effect("inventory", reference, "hold")
    return branch_body(branch)


@transaction.atomic
def inventory_confirm(reference: str) -> dict[str, Any]:
    with _as_service_error():
        branch = participant.begin_confirm("inventory", reference)
    if branch.first_time:
        payload = branch.payload
        Product.objects.filter(product_id=payload["product_id"]).update(
            held=F("held") - payload["quantity"]
        )
        _record_effect("inventory", reference, "deduct")
    return branch_body(branch)


@transaction.atomic
def inventory_cancel(reference: str) -> dict[str, Any]:
    with _as_service_error():
        branch = participant.begin_cancel("inventory", reference)
    if branch.first_time:
        payload = branch.payload
        Product.objects.filter(product_id=payload["product_id"]).update(
            held=F("held") - payload["quantity"],
            available=F("available") + payload["quantity"],
        )
        _record_effect("inventory", reference, "unhold")
    return branch_body(branch)


# --- payment ----------------------------------------------------------------


@transaction.atomic
def payment_try(reference: str, customer_id: str, amount: Decimal) -> dict[str, Any]:
    payload = {"customer_id": customer_id, "amount": str(amount)}
    with _as_service_error():
        branch = participant.begin_try("payment", reference, payload)
    _record_effect("payment", reference, "authorise")
    return branch_body(branch)


@transaction.atomic
def payment_confirm(reference: str) -> dict[str, Any]:
    with _as_service_error():
        branch = participant.begin_confirm("payment", reference)
    if branch.first_time:
        _record_effect("payment", reference, "capture")
    return branch_body(branch)


@transaction.atomic
def payment_cancel(reference: str) -> dict[str, Any]:
    with _as_service_error():
        branch = participant.begin_cancel("payment", reference)
    if branch.first_time:
        _record_effect("payment", reference, "void")
    return branch_body(branch)


# --- order ------------------------------------------------------------------


@transaction.atomic
def order_try(
    reference: str, customer_id: str, product_id: str, quantity: int, amount: Decimal
) -> dict[str, Any]:
    """Create the order as pending; it is confirmed or cancelled in phase two."""
    payload = {"product_id": product_id, "quantity": quantity}
    with _as_service_error():
        branch = participant.begin_try("order", reference, payload)
    create_order(reference, customer_id, product_id, quantity, amount)
    return branch_body(branch)


def _set_order_status(reference: str, status: str, effect: str) -> None:
    Order.objects.filter(reference=reference).update(status=status)
    _record_effect("order", reference, effect)


@transaction.atomic
def order_confirm(reference: str) -> dict[str, Any]:
    with _as_service_error():
        branch = participant.begin_confirm("order", reference)
    if branch.first_time:
        _set_order_status(reference, Order.Status.CONFIRMED, "confirm")
    return branch_body(branch)


@transaction.atomic
def order_cancel(reference: str) -> dict[str, Any]:
    with _as_service_error():
        branch = participant.begin_cancel("order", reference)
    if branch.first_time:
        _set_order_status(reference, Order.Status.CANCELLED, "cancelled")
    return branch_body(branch)


# --- state ------------------------------------------------------------------


def find_branch(service: str, reference: str) -> dict[str, Any] | None:
    """Return a service's branch of a transaction, or None if it has none."""
    row = ParticipantBranch.objects.filter(
        service=service, transaction_id=reference
    ).first()
    return None if row is None else branch_body(participant.Branch(row, False))


def branch_state(service: str) -> dict[str, Any]:
    """Count a service's TCC branches per state, for its state endpoint."""
    branches = ParticipantBranch.objects.filter(service=service)
    counts = {
        state: branches.filter(state=state).count()
        for state in ParticipantBranch.State.values
    }
    state: dict[str, Any] = {
        "tcc_branches": counts,
        "tcc_cancelled_before_try": branches.filter(cancelled_before_try=True).count(),
    }
    if service == "payment":
        state.update(_payment_totals(branches))
    return state


def _payment_totals(branches: Any) -> dict[str, str]:
    def total(branch_state: str) -> str:
        amounts = branches.filter(state=branch_state).values_list("payload", flat=True)
        value = sum((Decimal(p.get("amount", "0")) for p in amounts), Decimal("0"))
        return str(value.quantize(Decimal("0.01")))

    return {
        "authorised_total": total(ParticipantBranch.State.TRIED),
        "captured_total": total(ParticipantBranch.State.CONFIRMED),
        "voided_total": total(ParticipantBranch.State.CANCELLED),
    }


OPERATIONS = {
    "order": (order_try, order_confirm, order_cancel),
    "inventory": (inventory_try, inventory_confirm, inventory_cancel),
    "payment": (payment_try, payment_confirm, payment_cancel),
}
