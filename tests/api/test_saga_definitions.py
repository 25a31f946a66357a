"""POST and PUT /api/sagas/: every field is checked before anything is stored."""

from typing import Any

import pytest
from rest_framework.test import APIClient

from resilience.models import Target
from sagas.models import SagaDefinition, SagaRun


@pytest.fixture(autouse=True)
def order_target(db: Any) -> Target:
    return Target.objects.create(name="order", base_url="http://127.0.0.1:9/order")


def definition(schema: list[Any] | None = None, **step_fields: Any) -> dict[str, Any]:
    step = {
        "name": "ping",
        "target": "order",
        "action": {"method": "POST", "path": "/ping/"},
        **step_fields,
    }
    return {"name": "checked", "input_schema": schema or [], "steps": [step]}


def errors_of(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    return {error["field"]: error for error in response.json()["errors"]}


STEP_CASES = [
    ({"retry": {"max_attempts": 0}}, "steps.0.retry.max_attempts", 0),
    ({"retry": {"jitter": "lots"}}, "steps.0.retry.jitter", "lots"),
    ({"compensation_retry": {"bogus": 1}}, "steps.0.compensation_retry.bogus", 1),
    ({"timeout": {"timeout_duration": -1}}, "steps.0.timeout.timeout_duration", -1),
    ({"timeout": "fast"}, "steps.0.timeout", "fast"),
    ({"on_failure": "explode"}, "steps.0.on_failure", "explode"),
    ({"colour": "red"}, "steps.0.colour", "red"),
    ({"target": ""}, "steps.0.target", ""),
    ({"target": "nosuchtarget"}, "steps.0.target", "nosuchtarget"),
    (
        {"action": {"method": "POST", "path": "/x/", "headers": {}}},
        "steps.0.action.headers",
        {},
    ),
    (
        {"action": {"function": "os.system", "payload": "true"}},
        "steps.0.action.function",
        "os.system",
    ),
    ({"action": "ping"}, "steps.0.action", "ping"),
    (
        {"action": {"method": "POST", "path": "/x/{{input.nope}}/"}},
        "steps.0.action",
        {"method": "POST", "path": "/x/{{input.nope}}/"},
    ),
    (
        {"action": {"method": "POST", "path": "/x/{{steps.ping.output}}/"}},
        "steps.0.action",
        {"method": "POST", "path": "/x/{{steps.ping.output}}/"},
    ),
]


@pytest.mark.parametrize(("fields", "field", "value"), STEP_CASES)
def test_bad_step_names_its_field(
    operator_client: APIClient, fields: dict[str, Any], field: str, value: Any
) -> None:
    response = operator_client.post("/api/sagas/", definition(**fields), format="json")

    errors = errors_of(response)
    assert field in errors, errors
    assert errors[field]["value"] == value
    assert not SagaDefinition.objects.filter(name="checked").exists()


SCHEMA_CASES = [
    ({"name": "n", "type": "integer", "min_value": "abc"}, "min_value", "abc"),
    ({"name": "n", "type": "string", "max_length": "abc"}, "max_length", "abc"),
    ({"name": "n", "type": "string", "max_length": -1}, "max_length", -1),
    ({"name": "n", "type": "decimal", "decimal_places": "x"}, "decimal_places", "x"),
    ({"name": "n", "type": "decimal", "min_value": "abc"}, "min_value", "abc"),
    ({"name": "n", "type": "boolean", "min_length": 3}, "min_length", 3),
    ({"name": "n", "type": "string", "required": "yes"}, "required", "yes"),
    ({"name": "n", "type": "string", "colour": 1}, "colour", 1),
    ({"name": "", "type": "string"}, "name", ""),
    ({"name": "n", "type": "text"}, "type", "text"),
    ({"name": "n", "type": "integer", "min_value": 5, "max_value": 1}, "max_value", 1),
]


@pytest.mark.parametrize(("spec", "rule", "value"), SCHEMA_CASES)
def test_bad_input_field_names_its_rule(
    operator_client: APIClient, spec: dict[str, Any], rule: str, value: Any
) -> None:
    response = operator_client.post(
        "/api/sagas/", definition(schema=[spec]), format="json"
    )

    errors = errors_of(response)
    assert f"input_schema.0.{rule}" in errors, errors
    assert errors[f"input_schema.0.{rule}"]["value"] == value


def test_duplicate_input_field_rejected(operator_client: APIClient) -> None:
    schema = [{"name": "n", "type": "string"}, {"name": "n", "type": "integer"}]

    response = operator_client.post("/api/sagas/", definition(schema), format="json")

    assert errors_of(response)["input_schema.1.name"]["code"] == "unique"


def test_function_step_pause_and_placeholders_accepted(
    operator_client: APIClient,
) -> None:
    schema = [{"name": "amount", "type": "decimal", "min_value": "0.01"}]
    body = definition(
        schema,
        action={"function": "sagas.builtin_steps.noop", "payload": "{{input.amount}}"},
        compensation={"method": "POST", "path": "/undo/{{steps.ping.output}}/"},
        retry={"max_attempts": 2, "initial_interval": 10},
        timeout={"timeout_duration": 5},
        on_failure="pause",
    )

    response = operator_client.post("/api/sagas/", body, format="json")

    assert response.status_code == 201, response.content
    stored = SagaDefinition.objects.get(name="checked")
    assert stored.steps[0]["on_failure"] == "pause"


def test_name_and_kind_fixed_once_runs_exist(operator_client: APIClient) -> None:
    created = operator_client.post("/api/sagas/", definition(), format="json")
    assert created.status_code == 201, created.content
    saga = SagaDefinition.objects.get(name="checked")
    SagaRun.objects.create(definition=saga, steps_snapshot=saga.steps)

    changed = operator_client.put(
        "/api/sagas/checked/",
        {"name": "checked", "kind": "choreography", "steps": []},
        format="json",
    )

    errors = errors_of(changed)
    assert errors["kind"]["code"] == "immutable"
    saga.refresh_from_db()
    assert saga.kind == "orchestrated"
    assert saga.version == 1


def test_version_grows_from_the_stored_value(operator_client: APIClient) -> None:
    """Two replacements that read the same version both count."""
    created = operator_client.post("/api/sagas/", definition(), format="json")
    assert created.status_code == 201, created.content
    from sagas.serializers import SagaDefinitionSerializer

    stale = SagaDefinition.objects.get(name="checked")  # read at version 1
    SagaDefinition.objects.filter(pk=stale.pk).update(version=3)  # another writer
    serializer = SagaDefinitionSerializer(
        stale, data={**definition(), "description": "second"}
    )
    assert serializer.is_valid(), serializer.errors
    saved = serializer.save()

    assert saved.version == 4
    assert SagaDefinition.objects.get(pk=stale.pk).version == 4
