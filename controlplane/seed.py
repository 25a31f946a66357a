"""Demo data: the demo operator, the demo service targets and the order sagas.

Seeding is idempotent: it creates what is missing and brings the targets'
base URLs and the order saga up to date, so `make run` can call it on every
start.
"""

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction

from demo.services import seed_demo_data
from resilience import policies
from resilience.models import Policy, Target
from sagas.definitions import ORDER_CHOREOGRAPHY_SAGA, ORDER_SAGA
from sagas.models import SagaDefinition
from sagas.tcc_definitions import ORDER_TCC

logger = logging.getLogger(__name__)

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
DEMO_SERVICES = ["order", "inventory", "payment", "shipping"]

# Policy of each demo service: a breaker that opens after half of the last
# 20 calls failed (once 10 were made), retries that stay short enough to be
# slept in the worker, and generous bulkhead and rate limits.
DEMO_POLICY: dict[str, Any] = {
    "circuit_breaker": {
        "sliding_window_type": "count_based",
        "sliding_window_size": 20,
        "minimum_number_of_calls": 10,
        "failure_rate_threshold": 50,
        "wait_duration_in_open_state": 10.0,
        "permitted_number_of_calls_in_half_open_state": 3,
    },
    "bulkhead": {"max_concurrent_calls": 25, "max_wait_duration": 1.0},
    "rate_limiter": {
        "limit_for_period": 200,
        "limit_refresh_period": 1.0,
        "timeout_duration": 1.0,
    },
    "retry": {
        "max_attempts": 3,
        "initial_interval": 0.2,
        "multiplier": 2.0,
        "max_interval": 2.0,
        "jitter": "full",
    },
    "timeout": {"timeout_duration": 5.0},
    "on_state_store_error": "allow",
}


@transaction.atomic
def seed(base_url: str | None = None) -> None:
    """Create or update the demo user, targets, policies, saga and services."""
    base_url = (base_url or settings.DEMO_BASE_URL).rstrip("/")

    operators, _ = Group.objects.get_or_create(name=settings.OPERATOR_GROUP)
    user, created = User.objects.get_or_create(username=DEMO_USERNAME)
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save()
    user.groups.add(operators)

    for service in DEMO_SERVICES:
        target, _ = Target.objects.update_or_create(
            name=service,
            defaults={
                "base_url": f"{base_url}/demo/{service}",
                "description": f"Demo {service} service",
            },
        )
        if not Policy.objects.filter(target=target).exists():
            # Through the same path as the API, so version 1 has its history
            # row and audit entry like every later version.
            policies.save_policy(target, policies.normalize(DEMO_POLICY), None)

    for saga in (ORDER_SAGA, ORDER_CHOREOGRAPHY_SAGA, ORDER_TCC):
        _seed_saga(saga)

    seed_demo_data()
    logger.info("seeded demo data for %s", base_url)


def _seed_saga(saga: dict[str, Any]) -> None:
    """Create a seeded saga, or bring it up to date with a new version."""
    fields = {key: saga[key] for key in ("description", "input_schema", "steps")}
    fields["kind"] = saga.get("kind", SagaDefinition.Kind.ORCHESTRATED)
    definition, created = SagaDefinition.objects.get_or_create(
        name=saga["name"], defaults=fields
    )
    if not created and any(getattr(definition, k) != v for k, v in fields.items()):
        for key, value in fields.items():
            setattr(definition, key, value)
        definition.version += 1
        definition.save()
