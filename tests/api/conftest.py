"""API test fixtures: users with and without the operator role."""

from typing import Any

import pytest

from sagas.definitions import ORDER_SAGA
from sagas.models import SagaDefinition


@pytest.fixture
def order_saga(db: Any) -> SagaDefinition:
    fields = {
        k: ORDER_SAGA[k] for k in ("name", "description", "input_schema", "steps")
    }
    return SagaDefinition.objects.create(**fields)
