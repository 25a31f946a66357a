"""API test fixtures: users with and without the operator role."""

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from sagas.definitions import ORDER_SAGA
from sagas.models import SagaDefinition


@pytest.fixture
def operator(db: Any) -> User:
    user = User.objects.create_user("olivia", password="operator-pass")
    group, _ = Group.objects.get_or_create(name=settings.OPERATOR_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def reader(db: Any) -> User:
    return User.objects.create_user("rafael", password="reader-pass")


@pytest.fixture
def operator_client(operator: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def reader_client(reader: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(reader)
    return client


@pytest.fixture
def order_saga(db: Any) -> SagaDefinition:
    fields = {
        k: ORDER_SAGA[k] for k in ("name", "description", "input_schema", "steps")
    }
    return SagaDefinition.objects.create(**fields)
