"""The demo seed stores each policy's first version like the API does."""

from typing import Any

import pytest

from controlplane.seed import DEMO_SERVICES, seed
from resilience.models import AuditEntry, Policy, PolicyVersion

pytestmark = pytest.mark.django_db


def test_seeded_policies_have_version_one_in_history(db: Any) -> None:
    seed("http://127.0.0.1:9")
    seed("http://127.0.0.1:9")  # seeding again changes no policy

    for service in DEMO_SERVICES:
        policy = Policy.objects.get(target__name=service)
        [version] = PolicyVersion.objects.filter(target_name=service)
        assert policy.version == version.version == 1
        assert version.action == "create"
        assert version.config == policy.config
        assert version.diff, version
    assert AuditEntry.objects.filter(object_type="policy").count() == len(DEMO_SERVICES)
