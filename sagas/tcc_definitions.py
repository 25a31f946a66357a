"""The shape of a Try-Confirm-Cancel definition and the seeded ``order-tcc``.

A TCC definition keeps its participants in the definition's ``steps``
field. Each participant names a registered target and three calls,
``try``, ``confirm`` and ``cancel``, with the same method, path and body
templates as saga steps (see ``sagas.definitions``).
"""

import re
from typing import Any

from sagas.definitions import ORDER_SAGA, _call_problems

PHASES = ("try", "confirm", "cancel")
PARTICIPANT_KEYS = {"name", "target", *PHASES, "retry", "timeout"}


def validate_participants(participants: Any) -> list[str]:
    """Return the problems of a list of participant dicts, one message each."""
    if not isinstance(participants, list) or not participants:
        return ["steps: a tcc definition needs a non-empty list of participants."]
    problems: list[str] = []
    names: set[str] = set()
    for index, spec in enumerate(participants):
        where = f"steps.{index}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be an object, got {spec!r}.")
            continue
        unknown = sorted(set(spec) - PARTICIPANT_KEYS)
        if unknown:
            problems.append(
                f"{where}: unknown keys {unknown}; a participant has "
                f"{sorted(PARTICIPANT_KEYS)}."
            )
        name = spec.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_\-]{1,64}", name):
            problems.append(
                f"{where}.name: must be 1 to 64 of a-z, 0-9, _ or -, got {name!r}."
            )
        elif name in names:
            problems.append(
                f"{where}.name: '{name}' is used by an earlier participant."
            )
        else:
            names.add(name)
        if not isinstance(spec.get("target"), str) or not spec.get("target"):
            problems.append(
                f"{where}.target: must name a registered target, "
                f"got {spec.get('target')!r}."
            )
        for phase in PHASES:
            problems.extend(_call_problems(f"{where}.{phase}", spec.get(phase)))
    return problems


def _phase_call(phase: str) -> dict[str, Any]:
    return {"method": "POST", "path": f"/tcc/{{{{run.id}}}}/{phase}/"}


def _participant(name: str, service: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "target": service,
        "try": {"method": "POST", "path": "/tcc/try/", "body": body},
        "confirm": _phase_call("confirm"),
        "cancel": _phase_call("cancel"),
    }


# The order transaction over the demo services, with the order saga's input.
ORDER_TCC: dict[str, Any] = {
    "name": "order-tcc",
    "kind": "tcc",
    "description": (
        "Create a pending order, hold the stock and authorise the payment; "
        "when all three tries succeed, confirm them, otherwise cancel them."
    ),
    "input_schema": ORDER_SAGA["input_schema"],
    "steps": [
        _participant(
            "order",
            "order",
            {
                "reference": "{{run.id}}",
                "customer_id": "{{input.customer_id}}",
                "product_id": "{{input.product_id}}",
                "quantity": "{{input.quantity}}",
                "amount": "{{input.amount}}",
            },
        ),
        _participant(
            "inventory",
            "inventory",
            {
                "reference": "{{run.id}}",
                "product_id": "{{input.product_id}}",
                "quantity": "{{input.quantity}}",
            },
        ),
        _participant(
            "payment",
            "payment",
            {
                "reference": "{{run.id}}",
                "customer_id": "{{input.customer_id}}",
                "amount": "{{input.amount}}",
            },
        ),
    ],
}
