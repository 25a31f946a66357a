from django.contrib import admin

from .models import (
    RunStatusChange,
    SagaDefinition,
    SagaRun,
    StepAttempt,
    StepRun,
    StepStatusChange,
)


@admin.register(SagaDefinition)
class SagaDefinitionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "version", "updated_at"]


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    fields = ("index", "name", "status", "attempts", "compensation_attempts", "error")
    readonly_fields = fields


@admin.register(SagaRun)
class SagaRunAdmin(admin.ModelAdmin):
    list_display = ["id", "definition", "status", "needs_attention", "created_at"]
    list_filter = ["status", "needs_attention", "definition"]
    inlines = [StepRunInline]


admin.site.register(StepRun)
admin.site.register(StepAttempt)
admin.site.register(RunStatusChange)
admin.site.register(StepStatusChange)
