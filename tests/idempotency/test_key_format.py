"""Keys are quoted or bare strings of 1 to 255 printable ASCII characters."""

import pytest
from rest_framework.test import APIClient

from controlplane.idempotency import InvalidKey, parse_key
from controlplane.models import IdempotencyRecord
from sagas.models import SagaDefinition, SagaRun
from tests.idempotency.conftest import start_run


def test_quoted_and_bare_are_same_key(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    first = start_run(operator_client, '"order-1"')
    second = start_run(operator_client, "order-1")

    assert first.status_code == 201
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert SagaRun.objects.count() == 1
    assert IdempotencyRecord.objects.get().key == "order-1"


def test_256_characters_is_400(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start_run(operator_client, "k" * 256)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "idempotency_key_invalid"
    error = body["errors"][0]
    assert error["field"] == "Idempotency-Key"
    assert error["code"] == "max_length"
    assert "256" in error["message"]
    assert error["value"].startswith("k" * 64 + "...")
    assert len(error["value"]) < 120
    assert SagaRun.objects.count() == 0


def test_255_characters_is_accepted(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start_run(operator_client, "k" * 255)

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('""', "blank"),
        ("", "blank"),
        ('"abc', "invalid_quoting"),
        ('"abc"def', "invalid_quoting"),
        ('"a\\bc"', "invalid_quoting"),
        ("abc\x01", "invalid_character"),
        ('"abc\x7f"', "invalid_character"),
        ("caf\xe9", "invalid_character"),
        ("a1-x,a2-x", "multiple_values"),
        ('"a1-x", "a2-x"', "invalid_quoting"),
    ],
)
def test_malformed_key_is_rejected(raw: str, code: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        parse_key(raw)

    assert caught.value.code == code


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("abc", "abc"),
        ('"abc"', "abc"),
        ('  "abc" ', "abc"),
        ('"a\\"b\\\\c"', 'a"b\\c'),
        ("with space", "with space"),
        ('"a,b"', "a,b"),
    ],
)
def test_valid_key_is_parsed(raw: str, key: str) -> None:
    assert parse_key(raw) == key


def test_bad_quoting_is_400(
    operator_client: APIClient, order_saga: SagaDefinition
) -> None:
    response = start_run(operator_client, '"order-1')

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "invalid_quoting"
    assert error["value"] == '"order-1'
    assert "no closing one" in error["message"]
