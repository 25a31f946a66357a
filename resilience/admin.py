from django.contrib import admin

from .models import BreakerTransition, Policy, Target


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin):
    list_display = ["name", "base_url", "updated_at"]
    search_fields = ["name"]


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ["target", "version", "updated_at", "updated_by"]


@admin.register(BreakerTransition)
class BreakerTransitionAdmin(admin.ModelAdmin):
    list_display = ["target", "at", "from_state", "to_state", "reason"]
    list_filter = ["to_state"]
