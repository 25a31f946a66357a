"""Dashboard pages of the live resilience state: breakers and bulkheads."""

import logging
from datetime import datetime
from typing import Any

import redis
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlplane.permissions import is_operator
from resilience import samples, services
from resilience.api import breaker_view
from resilience.models import BreakerTransition, Target

logger = logging.getLogger(__name__)

TILES_PER_PAGE = 50
BREAKER_ACTIONS = {
    "force-open": "force_open",
    "disable": "disable",
    "metrics-only": "metrics_only",
    "reset": "reset",
}
# A bulkhead is shown as near capacity from this share of its permits on.
NEAR_CAPACITY = 0.8


@login_required
def breakers(request: HttpRequest) -> HttpResponse:
    page = Paginator(Target.objects.all(), TILES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    tiles = []
    store_error = ""
    for target in page.object_list:
        try:
            tiles.append(_tile(target))
        except redis.RedisError as exc:
            store_error = str(exc)
            tiles.append({"target": target.name, "state": "unknown"})
    context = {
        "page": page,
        "tiles": tiles,
        "store_error": store_error,
        "is_operator": is_operator(request.user),
    }
    return render(request, "resilience/breakers.html", context)


def _tile(target: Target) -> dict[str, Any]:
    tile = breaker_view(target)
    breaker = services.load_policy(target.name).circuit_breaker
    tile["failure_rate_threshold"] = breaker.failure_rate_threshold if breaker else None
    tile["slow_call_rate_threshold"] = (
        breaker.slow_call_rate_threshold if breaker else None
    )
    changed = tile.get("state_changed_at")
    if changed:
        since = datetime.fromisoformat(str(changed))
        tile["seconds_in_state"] = int((timezone.now() - since).total_seconds())
    tile["sparkline"] = samples.sparkline(target.name)
    return tile


@login_required
@require_POST
def breaker_action(request: HttpRequest, target: str, action: str) -> HttpResponse:
    """Force open, disable, switch to metrics-only or reset a breaker."""
    row = get_object_or_404(Target, name=target)
    method = BREAKER_ACTIONS.get(action)
    if method is None:
        raise Http404(f"Unknown breaker action '{action}'.")
    if not is_operator(request.user):
        messages.error(request, "Changing a breaker needs the operator role.")
        return redirect("breakers")
    try:
        getattr(services.pipeline(row.name).breaker, method)()
    except redis.RedisError as exc:
        logger.warning("target=%s breaker %s failed: %s", row.name, action, exc)
        messages.error(request, f"The state store is unreachable: {exc}")
    else:
        logger.info("target=%s breaker %s by %s", row.name, action, request.user)
        messages.success(request, f"Breaker of {row.name}: {action} done.")
    return redirect(request.POST.get("next") or "breakers")


@login_required
def bulkheads(request: HttpRequest) -> HttpResponse:
    page = Paginator(Target.objects.all(), TILES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = []
    store_error = ""
    for target in page.object_list:
        try:
            pipeline = services.pipeline(target.name)
            bulkhead = _configured(pipeline.bulkhead.snapshot())
            limiter = _configured(pipeline.rate_limiter.snapshot())
        except redis.RedisError as exc:
            store_error = str(exc)
            bulkhead = limiter = None
        rows.append(
            {
                "target": target.name,
                "bulkhead": bulkhead,
                "usage": _usage(bulkhead),
                "rate_limiter": limiter,
            }
        )
    context = {"page": page, "rows": rows, "store_error": store_error}
    return render(request, "resilience/bulkheads.html", context)


def _configured(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    return snapshot if snapshot.get("configured") else None


def _usage(bulkhead: dict[str, Any] | None) -> dict[str, Any] | None:
    if not bulkhead:
        return None
    maximum = max(int(bulkhead["max_concurrent_calls"]), 1)
    share = min(int(bulkhead["in_use"]) / maximum, 1.0)
    return {
        "share": share,
        "percent": round(share * 100),
        "near": share >= NEAR_CAPACITY,
    }


def attention_summary() -> dict[str, Any]:
    """Return targets whose breaker is not closed and bulkheads near capacity.

    Breaker states come from each target's latest stored transition, one
    indexed query. Bulkhead usage comes from the sampler's latest reading,
    one Redis call, so it may lag by up to one sampling interval.
    """
    latest = BreakerTransition.objects.filter(target=OuterRef("pk")).order_by(
        "-at", "-id"
    )
    not_closed = (
        Target.objects.annotate(state=Subquery(latest.values("to_state")[:1]))
        .exclude(state__isnull=True)
        .exclude(state="closed")
        .values_list("name", "state")
    )
    try:
        usage = samples.latest_bulkhead_usage()
    except redis.RedisError:
        usage = {}
    near = [
        {"target": name, **row}
        for name, row in sorted(usage.items())
        if row["share"] >= NEAR_CAPACITY
    ]
    return {"not_closed": list(not_closed), "near_capacity": near}
