"""TCC definitions posted to /api/sagas/ are validated per participant."""

import copy
from typing import Any

from rest_framework.test import APIClient

from sagas.models import SagaDefinition
from sagas.tcc_definitions import ORDER_TCC


def definition(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ORDER_TCC)
    body["name"] = "my-tcc"
    body.update(changes)
    return body


def post(client: APIClient, body: dict[str, Any]) -> Any:
    return client.post("/api/sagas/", body, format="json")


def test_valid_tcc_definition_created(operator_client: APIClient) -> None:
    response = post(operator_client, definition())

    assert response.status_code == 201, response.content
    assert SagaDefinition.objects.get(name="my-tcc").kind == "tcc"


def test_missing_phase_named(operator_client: APIClient) -> None:
    body = definition()
    del body["steps"][1]["confirm"]

    response = post(operator_client, body)

    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "steps"
    assert "steps.1.confirm: must be an object" in error["message"]


def test_bad_method_names_value(operator_client: APIClient) -> None:
    body = definition()
    body["steps"][2]["cancel"]["method"] = "BREW"

    response = post(operator_client, body)

    assert response.status_code == 400, response.content
    messages = [e["message"] for e in response.json()["errors"]]
    assert any("steps.2.cancel.method" in m and "'BREW'" in m for m in messages)


def test_duplicate_participant_rejected(operator_client: APIClient) -> None:
    body = definition()
    body["steps"][1]["name"] = "order"

    response = post(operator_client, body)

    assert response.status_code == 400, response.content
    messages = [e["message"] for e in response.json()["errors"]]
    assert any("'order' is used by an earlier participant" in m for m in messages)


def test_saga_steps_are_not_participants(operator_client: APIClient) -> None:
    from sagas.definitions import ORDER_SAGA

    response = post(operator_client, definition(steps=ORDER_SAGA["steps"]))

    assert response.status_code == 400, response.content
    messages = [e["message"] for e in response.json()["errors"]]
    assert any(
        "steps.0: unknown keys ['action', 'compensation']" in m for m in messages
    )


def test_empty_participants_rejected(operator_client: APIClient) -> None:
    response = post(operator_client, definition(steps=[]))

    assert response.status_code == 400, response.content
    assert "non-empty list of participants" in response.json()["errors"][0]["message"]
