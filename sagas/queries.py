"""Run filters shared by the runs API and the runs page."""

from typing import Any

from django.db.models import QuerySet

from sagas.models import SagaDefinition, SagaRun


def filter_runs(
    queryset: QuerySet[SagaRun], filters: dict[str, Any]
) -> QuerySet[SagaRun]:
    """Apply validated run filters (see RunFilterSerializer) to a queryset."""
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    if filters.get("saga"):
        # Filtering on the id rather than joining on the name lets the count
        # of a filtered page use the (definition, status, created_at) index.
        definition = SagaDefinition.objects.filter(name=filters["saga"]).first()
        queryset = queryset.filter(definition_id=definition.pk if definition else None)
    if filters.get("needs_attention") is not None:
        queryset = queryset.filter(needs_attention=filters["needs_attention"])
    if filters.get("created_after"):
        queryset = queryset.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        queryset = queryset.filter(created_at__lt=filters["created_before"])
    if filters.get("q"):
        queryset = queryset.filter(id__startswith=filters["q"])
    return queryset
