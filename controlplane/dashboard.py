"""The /idempotency/ dashboard page: records and keys sent downstream."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.exceptions import ValidationError

from controlplane.idempotency_api import filter_records
from controlplane.models import DownstreamKey, IdempotencyRecord

RECORDS_PER_PAGE = 25
# Keys sent downstream shown without a run filter: the latest ones.
RECENT_DOWNSTREAM_KEYS = 20
FILTERS = (
    "key",
    "key_contains",
    "status",
    "route",
    "run",
    "created_after",
    "created_before",
)


@login_required
def idempotency_records(request: HttpRequest) -> HttpResponse:
    """List idempotency records with the API's filters, kept in the URL.

    With a ``run`` filter, the page also lists every key that the run's
    steps sent downstream and to which service.
    """
    filters = {name: request.GET.get(name, "").strip() for name in FILTERS}
    records = IdempotencyRecord.objects.select_related("user")
    errors: list[str] = []
    try:
        records = filter_records(records, filters)
    except ValidationError as exc:
        errors = _messages(exc.detail)
        records = records.none()

    downstream = DownstreamKey.objects.all()
    if filters["run"] and not errors:
        downstream = downstream.filter(run_id=filters["run"])
    else:
        downstream = downstream[:RECENT_DOWNSTREAM_KEYS]

    page = Paginator(records, RECORDS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "statuses": IdempotencyRecord.Status.values,
        "errors": errors,
        "downstream": downstream,
    }
    return render(
        request,
        "controlplane/idempotency.html",
        context,
        status=400 if errors else 200,
    )


def _messages(detail: object) -> list[str]:
    if not isinstance(detail, dict):
        return [str(detail)]
    return [
        f"{field}: {message}"
        for field, messages in detail.items()
        for message in (messages if isinstance(messages, list) else [messages])
    ]
