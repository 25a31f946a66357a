from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import AuditEntry, BreakerTransition, Policy, PolicyVersion, Target


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows for inspection only.

    Targets and policies change through the API or the policies page, which
    validate them, keep each version and tell the workers. History rows
    never change.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Target)
class TargetAdmin(ReadOnlyAdmin):
    list_display = ["name", "base_url", "updated_at"]
    search_fields = ["name"]


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    list_display = ["target", "version", "updated_at", "updated_by"]


@admin.register(BreakerTransition)
class BreakerTransitionAdmin(admin.ModelAdmin):
    list_display = ["target", "at", "from_state", "to_state", "reason"]
    list_filter = ["to_state"]


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ["target_name", "version", "action", "changed_by", "changed_at"]
    list_filter = ["action"]
    search_fields = ["target_name"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "username", "action", "object_type", "object_name"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_name", "username"]
