"""TCC definitions posted to /api/sagas/ are validated per participant."""

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from resilience.models import Target
from sagas.models import SagaDefinition
from sagas.tcc_definitions import ORDER_TCC


@pytest.fixture(autouse=True)
def targets(db: Any) -> None:
    """A participant's calls go to a registered target."""
    for name in ("order", "inventory", "payment"):
        Target.objects.create(name=name, base_url=f"http://127.0.0.1:9/{name}")


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
    [error] = response.json()["errors"]
    assert error["field"] == "steps.1.confirm"
    assert error["code"] == "required"
    assert error["message"] == "This field is required."


def test_bad_method_names_value(operator_client: APIClient) -> None:
    body = definition()
    body["steps"][2]["cancel"]["method"] = "BREW"

    response = post(operator_client, body)

    assert response.status_code == 400, response.content
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert errors["steps.2.cancel.method"]["value"] == "BREW"
    assert "'BREW'" in errors["steps.2.cancel.method"]["message"]


def test_duplicate_participant_rejected(operator_client: APIClient) -> None:
    body = definition()
    body["steps"][1]["name"] = "order"

    response = post(operator_client, body)

    assert response.status_code == 400, response.content
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert errors["steps.1.name"]["code"] == "unique"
    assert "'order' names an earlier participant" in errors["steps.1.name"]["message"]


def test_saga_steps_are_not_participants(operator_client: APIClient) -> None:
    from sagas.definitions import ORDER_SAGA

    response = post(operator_client, definition(steps=ORDER_SAGA["steps"]))

    assert response.status_code == 400, response.content
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"steps.0.action", "steps.0.compensation", "steps.0.try"} <= fields


def test_empty_participants_rejected(operator_client: APIClient) -> None:
    response = post(operator_client, definition(steps=[]))

    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "steps"
    assert "non-empty list of participants" in error["message"]


def test_unregistered_participant_target_rejected(operator_client: APIClient) -> None:
    body = definition()
    body["steps"][0]["target"] = "nowhere"

    response = post(operator_client, body)

    assert response.status_code == 400, response.content
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert errors["steps.0.target"]["value"] == "nowhere"
