"""The shape of a Try-Confirm-Cancel definition and the seeded ``order-tcc``.

A TCC definition keeps its participants in the definition's ``steps``
field. Each participant names a registered target and three calls,
``try``, ``confirm`` and ``cancel``, with the same method, path and body
templates as saga steps (see ``sagas.definitions``).
"""

from typing import Any

from sagas.checks import (
    MAX_STEPS,
    STEP_NAME_RULE,
    Problem,
    call_problems,
    name_problems,
    placeholder_problems,
    policy_problems,
    target_problems,
)
from sagas.definitions import ORDER_SAGA

PHASES = ("try", "confirm", "cancel")
PARTICIPANT_KEYS = {"name", "target", *PHASES, "retry", "timeout"}


def participant_problems(participants: Any, input_names: set[str]) -> list[Problem]:
    """Check the participants of a TCC definition, as saga steps are checked."""
    if not isinstance(participants, list) or not participants:
        return [
            Problem(
                "",
                "invalid",
                "A tcc definition needs a non-empty list of participants.",
            )
        ]
    if len(participants) > MAX_STEPS:
        return [Problem("", "max_length", f"At most {MAX_STEPS} participants.")]
    problems: list[Problem] = []
    names: set[str] = set()
    for index, spec in enumerate(participants):
        at = str(index)
        if not isinstance(spec, dict):
            problems.append(
                Problem(at, "invalid_type", f"Must be an object, got {spec!r:.200}.")
            )
            continue
        problems.extend(
            Problem(
                f"{at}.{key}",
                "unknown_field",
                "Is not a participant field; expected one of "
                f"{', '.join(sorted(PARTICIPANT_KEYS))}.",
            )
            for key in sorted(set(spec) - PARTICIPANT_KEYS)
        )
        named = name_problems(at, spec, STEP_NAME_RULE, names, "participant")
        if not named:
            names.add(spec["name"])
        problems.extend(named)
        problems.extend(_participant_problems(at, spec, input_names))
    return problems


def _participant_problems(
    at: str, spec: dict[str, Any], input_names: set[str]
) -> list[Problem]:
    problems = target_problems(at, spec.get("target"), http=True)
    for phase in PHASES:
        if phase not in spec:
            problems.append(
                Problem(f"{at}.{phase}", "required", "This field is required.")
            )
            continue
        problems.extend(call_problems(f"{at}.{phase}", spec.get(phase)))
        problems.extend(
            placeholder_problems(f"{at}.{phase}", spec.get(phase), input_names, set())
        )
    problems.extend(policy_problems(at, spec))
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
