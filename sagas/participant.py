"""The participant side of Try-Confirm-Cancel, for a Django service.

A service that takes part in a TCC transaction keeps one
``ParticipantBranch`` row per transaction and calls these functions inside
the database transaction that applies its own effect:

    from django.db import transaction
    from sagas import participant

    @transaction.atomic
    def hold(reference, product_id, quantity):
        branch = participant.begin_try("inventory", reference, {"qty": quantity})
        ...hold the stock...

    @transaction.atomic
    def deduct(reference):
        branch = participant.begin_confirm("inventory", reference)
        if branch.first_time:
            ...deduct what branch.payload describes...

The rules they enforce, which make the coordinator's retries safe:

- ``confirm`` and ``cancel`` are idempotent: a repeat returns the branch
  with ``first_time`` False, so the caller applies nothing again.
- A ``cancel`` for a try that never arrived succeeds and is remembered as
  a cancelled branch with ``cancelled_before_try`` set.
- A ``try`` that arrives after its ``cancel`` raises ``BranchConflict``
  (respond with 409), as do a confirm after a cancel and a cancel after a
  confirm.

The unique constraint on (service, transaction_id) decides between
simultaneous calls, so two of them never both apply an effect.
"""

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from sagas.models import ParticipantBranch

State = ParticipantBranch.State


class BranchConflict(Exception):
    """The call contradicts what the branch already did; respond with 409."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class Branch:
    """A branch after a call: its row and whether this call changed it."""

    row: ParticipantBranch
    first_time: bool

    @property
    def payload(self) -> dict[str, Any]:
        return dict(self.row.payload)


def begin_try(service: str, transaction_id: str, payload: dict[str, Any]) -> Branch:
    """Store a tried branch, or raise BranchConflict if one exists.

    A repeat of the same try is rejected too: the coordinator sends each
    try with one Idempotency-Key, which the service's key store replays.
    """
    try:
        with transaction.atomic():
            row = ParticipantBranch.objects.create(
                service=service,
                transaction_id=transaction_id,
                state=State.TRIED,
                payload=payload,
            )
    except IntegrityError:
        existing = _locked(service, transaction_id)
        raise _try_conflict(service, transaction_id, existing) from None
    return Branch(row, first_time=True)


def begin_confirm(service: str, transaction_id: str) -> Branch:
    """Move a tried branch to confirmed once; raise BranchConflict otherwise."""
    row = _locked(service, transaction_id)
    if row is None:
        raise BranchConflict(
            "not_tried",
            f"The {service} service has no try for transaction "
            f"{transaction_id!r}, so there is nothing to confirm.",
        )
    if row.state == State.CONFIRMED:
        return Branch(row, first_time=False)
    if row.state == State.CANCELLED:
        raise BranchConflict(
            "already_cancelled",
            f"Transaction {transaction_id!r} was cancelled on the {service} "
            "service and cannot be confirmed.",
        )
    row.state = State.CONFIRMED
    row.save(update_fields=["state", "updated_at"])
    return Branch(row, first_time=True)


def begin_cancel(service: str, transaction_id: str) -> Branch:
    """Move a branch to cancelled once, remembering a cancel before its try.

    ``first_time`` is True only when a tried branch was cancelled, that is
    when the caller has an effect to undo.
    """
    row = _locked(service, transaction_id)
    if row is None:
        try:
            with transaction.atomic():
                row = ParticipantBranch.objects.create(
                    service=service,
                    transaction_id=transaction_id,
                    state=State.CANCELLED,
                    cancelled_before_try=True,
                )
        except IntegrityError:
            # The try committed between our read and our insert.
            row = _locked(service, transaction_id)
        else:
            return Branch(row, first_time=False)
    assert row is not None
    if row.state == State.CANCELLED:
        return Branch(row, first_time=False)
    if row.state == State.CONFIRMED:
        raise BranchConflict(
            "already_confirmed",
            f"Transaction {transaction_id!r} was confirmed on the {service} "
            "service and cannot be cancelled.",
        )
    row.state = State.CANCELLED
    row.save(update_fields=["state", "updated_at"])
    return Branch(row, first_time=True)


def _locked(service: str, transaction_id: str) -> ParticipantBranch | None:
    return (
        ParticipantBranch.objects.select_for_update()
        .filter(service=service, transaction_id=transaction_id)
        .first()
    )


def _try_conflict(
    service: str, transaction_id: str, existing: ParticipantBranch | None
) -> BranchConflict:
    if existing is not None and existing.state == State.CANCELLED:
        return BranchConflict(
            "cancelled_before_try",
            f"Transaction {transaction_id!r} was cancelled on the {service} "
            "service before its try arrived, so the try is rejected and "
            "nothing is held.",
        )
    return BranchConflict(
        "already_tried",
        f"The {service} service already has a try for transaction "
        f"{transaction_id!r}; retry with the same Idempotency-Key to get the "
        "first response.",
    )
