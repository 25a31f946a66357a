"""Downstream targets, their resilience policies and breaker transitions.

Policies are durable here; their runtime state (breaker windows, bulkhead
permits, rate limiter tokens) lives in Redis and is owned by
``resilience.core``.
"""

from django.conf import settings
from django.db import models


class Target(models.Model):
    """A named downstream service that protected calls may reach."""

    name = models.SlugField(max_length=64, unique=True)
    base_url = models.URLField(max_length=500)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Policy(models.Model):
    """The resilience policy of one target, as the core's section dicts.

    ``config`` holds the sections ``circuit_breaker``, ``bulkhead``,
    ``rate_limiter``, ``retry`` and ``timeout`` plus ``on_state_store_error``,
    with the core's field names; ``version`` grows by one on every change so
    that workers can tell a cached copy is stale.
    """

    target = models.OneToOneField(
        Target, on_delete=models.CASCADE, related_name="policy"
    )
    config = models.JSONField(default=dict)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return f"{self.target.name} v{self.version}"


class BreakerTransition(models.Model):
    """One state change of a target's circuit breaker, for its history."""

    target = models.ForeignKey(
        Target, on_delete=models.CASCADE, related_name="breaker_transitions"
    )
    at = models.DateTimeField()
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    reason = models.CharField(max_length=200)
    failure_rate = models.FloatField(null=True, blank=True)
    slow_call_rate = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target", "-at"])]

    def __str__(self) -> str:
        return f"{self.target.name}: {self.from_state} -> {self.to_state}"


class PolicyVersion(models.Model):
    """One saved revision of a target's policy, kept after the policy is gone.

    Rows are keyed by the target's name rather than a foreign key, so the
    history of a deleted policy or target stays readable. ``config`` is the
    policy as saved (None for a deletion) and ``diff`` lists the changed
    fields as ``{"path", "old", "new"}`` entries.
    """

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        IMPORT = "import"

    target_name = models.SlugField(max_length=64)
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=8, choices=Action.choices)
    config = models.JSONField(null=True, blank=True)
    diff = models.JSONField(default=list)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["target_name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["target_name", "version"], name="policy_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target_name} v{self.version} ({self.action})"


class AuditEntry(models.Model):
    """One write to a target or policy: who made it, when, and what changed."""

    at = models.DateTimeField(db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept apart from the foreign key so the entry still names a deleted user.
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=16)
    object_type = models.CharField(max_length=16)
    object_name = models.CharField(max_length=64)
    summary = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.object_type} {self.object_name}"
