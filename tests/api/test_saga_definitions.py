"""POST /api/sagas/: every step field is checked before anything is stored."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from sagas.models import SagaDefinition


def definition(**step_fields: Any) -> dict[str, Any]:
    step = {
        "name": "ping",
        "target": "order",
        "action": {"method": "POST", "path": "/ping/"},
        **step_fields,
    }
    return {"name": "checked", "input_schema": [], "steps": [step]}


def problems(response: Any) -> str:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert {error["field"] for error in errors} == {"steps"}
    return " ".join(error["message"] for error in errors)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"retry": {"max_attempts": 0}}, "steps.0.retry: retry.max_attempts must"),
        ({"retry": {"max_attempts": 2, "jitter": "lots"}}, "got 'lots'"),
        (
            {"compensation_retry": {"bogus": 1}},
            "steps.0.compensation_retry: retry.bogus is not",
        ),
        ({"timeout": {"timeout_duration": -1}}, "timeout.timeout_duration must"),
        ({"timeout": "fast"}, "timeout must be an object, got 'fast'"),
        ({"on_failure": "explode"}, "on_failure: must be one of compensate, pause"),
        ({"colour": "red"}, "steps.0.colour: is not a known step field"),
        (
            {"action": {"method": "POST", "path": "/x/", "headers": {}}},
            "steps.0.action.headers: is not a known field of an HTTP call",
        ),
        (
            {"action": {"function": "os.system", "payload": "true"}},
            "steps.0.action.function: must name a registered saga step",
        ),
        ({"action": "ping"}, "steps.0.action: must be an object"),
        ({"target": ""}, "steps.0.target: must name a registered target, got ''"),
    ],
)
def test_bad_step_rejected(
    operator_client: APIClient, fields: dict[str, Any], expected: str
) -> None:
    response = operator_client.post("/api/sagas/", definition(**fields), format="json")

    assert expected in problems(response)
    assert not SagaDefinition.objects.filter(name="checked").exists()


def test_function_step_and_pause_accepted(operator_client: APIClient) -> None:
    body = definition(
        action={"function": "sagas.builtin_steps.noop", "payload": {"n": 1}},
        retry={"max_attempts": 2, "initial_interval": 10},
        timeout={"timeout_duration": 5},
        on_failure="pause",
    )

    response = operator_client.post("/api/sagas/", body, format="json")

    assert response.status_code == 201, response.content
    stored = SagaDefinition.objects.get(name="checked")
    assert stored.steps[0]["on_failure"] == "pause"
