"""The OpenAPI schema declares the Idempotency-Key header and its errors."""

from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def paths() -> dict[str, Any]:
    return dict(SchemaGenerator().get_schema(request=None, public=True)["paths"])


def key_parameter(operation: dict[str, Any]) -> dict[str, Any]:
    found = [
        p
        for p in operation["parameters"]
        if p["in"] == "header" and p["name"] == "Idempotency-Key"
    ]
    assert len(found) == 1
    return found[0]


def test_start_run_requires_key(paths: dict[str, Any]) -> None:
    operation = paths["/api/runs/"]["post"]

    assert key_parameter(operation)["required"] is True
    assert {"201", "400", "409", "422"} <= set(operation["responses"])


def test_call_requires_key(paths: dict[str, Any]) -> None:
    operation = paths["/api/calls/"]["post"]

    assert key_parameter(operation)["required"] is True
    assert {"409", "422"} <= set(operation["responses"])


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/sagas/", "post"),
        ("/api/sagas/{name}/", "put"),
        ("/api/sagas/{name}/", "patch"),
        ("/api/breakers/{target}/reset/", "post"),
        ("/api/breakers/{target}/force-open/", "post"),
    ],
)
def test_other_writes_accept_key(paths: dict[str, Any], path: str, method: str) -> None:
    operation = paths[path][method]

    assert key_parameter(operation).get("required", False) is False
    assert {"409", "422"} <= set(operation["responses"])
