"""Dashboard pages of the resilience state: breakers, bulkheads and policies."""

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import redis
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlplane.permissions import is_operator
from resilience import policies, samples, services
from resilience.api import breaker_view
from resilience.models import BreakerTransition, Policy, PolicyVersion, Target
from resilience.serializers import PolicySerializer

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


# --- policies -------------------------------------------------------------------

HISTORY_ON_PAGE = 50


@login_required
def policy_list(request: HttpRequest) -> HttpResponse:
    """List every target with a summary of its policy and its version."""
    targets = Target.objects.select_related("policy").order_by("name")
    page = Paginator(targets, TILES_PER_PAGE).get_page(request.GET.get("page"))
    rows = []
    for target in page.object_list:
        policy = getattr(target, "policy", None)
        rows.append(
            {
                "target": target,
                "version": policy.version if policy is not None else None,
                "summary": _summary(policies.effective(policy.config))
                if policy is not None
                else [],
            }
        )
    return render(request, "resilience/policies.html", {"page": page, "rows": rows})


def _summary(config: dict[str, Any]) -> list[str]:
    parts = []
    breaker = config.get("circuit_breaker")
    if breaker:
        unit = "calls" if breaker["sliding_window_type"] == "count_based" else "s"
        parts.append(
            f"breaker at {breaker['failure_rate_threshold']:g} % of "
            f"{breaker['sliding_window_size']} {unit}"
        )
    bulkhead = config.get("bulkhead")
    if bulkhead:
        parts.append(f"bulkhead {bulkhead['max_concurrent_calls']} concurrent")
    limiter = config.get("rate_limiter")
    if limiter:
        parts.append(
            f"rate {limiter['limit_for_period']} per "
            f"{limiter['limit_refresh_period']:g} s"
        )
    retry = config.get("retry")
    if retry:
        parts.append(f"retry {retry['max_attempts']} attempts")
    timeout = config.get("timeout")
    if timeout:
        parts.append(f"timeout {timeout['timeout_duration']:g} s")
    return parts


@login_required
def policy_edit(request: HttpRequest, target: str) -> HttpResponse:
    """Show and change one target's policy, one JSON text area per section.

    The form goes through the API's serializer, so the rules and messages
    are the same; an invalid form is shown again with the input kept.
    """
    row = get_object_or_404(Target, name=target)
    policy = Policy.objects.filter(target=row).first()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if not is_operator(request.user):
            raise PermissionDenied("Changing a policy needs the operator role.")
        form = {name: request.POST.get(name, "") for name in _FORM_FIELDS}
        data, errors = _parse_form(form)
        if not errors:
            serializer = PolicySerializer(policy, data={"target": row.name, **data})
            if serializer.is_valid():
                saved, changes = policies.save_policy(
                    row, serializer.validated_data["config"], request.user
                )
                messages.success(
                    request,
                    f"Policy of {row.name} saved as version {saved.version}."
                    if changes
                    else f"Policy of {row.name} is unchanged.",
                )
                return redirect("policy-edit", target=row.name)
            errors = _group_errors(serializer.errors)
    else:
        form = _form_values(policy)

    context = {
        "target": row,
        "policy": policy,
        "form": form,
        "sections": [
            {"name": name, "value": form[name], "errors": errors.get(name, [])}
            for name in policies.SECTIONS
        ],
        "other_errors": [
            message
            for name, found in errors.items()
            if name not in policies.SECTIONS
            for message in found
        ],
        "history": PolicyVersion.objects.filter(target_name=row.name)
        .select_related("changed_by")
        .order_by("-version")[:HISTORY_ON_PAGE],
        "is_operator": is_operator(request.user),
    }
    status = 400 if errors else 200
    return render(request, "resilience/policies_edit.html", context, status=status)


_FORM_FIELDS = (*policies.SECTIONS, "on_state_store_error")


def _form_values(policy: Policy | None) -> dict[str, str]:
    config = policies.effective(policy.config) if policy is not None else {}
    values = {
        name: json.dumps(config[name], indent=2) if config.get(name) else ""
        for name in policies.SECTIONS
    }
    values["on_state_store_error"] = config.get("on_state_store_error", "allow")
    return values


def _parse_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Parse each section's JSON; an empty text area switches the section off."""
    data: dict[str, Any] = {"on_state_store_error": form["on_state_store_error"]}
    errors: dict[str, list[str]] = {}
    for name in policies.SECTIONS:
        text = form[name].strip()
        if not text:
            data[name] = None
            continue
        try:
            data[name] = json.loads(text)
        except ValueError as exc:
            errors[name] = [f"{name}: invalid JSON: {exc}."]
    return data, errors


def _group_errors(detail: Any) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for path, message in _flatten_errors(detail, []):
        section = path.split(".")[0] if path else "policy"
        grouped.setdefault(section, []).append(f"{path or 'policy'}: {message}")
    return grouped


def _flatten_errors(detail: Any, path: list[str]) -> Iterator[tuple[str, str]]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _flatten_errors(value, [*path, str(key)])
    elif isinstance(detail, list) and detail and not isinstance(detail[0], str):
        for index, value in enumerate(detail):
            yield from _flatten_errors(value, [*path, str(index)])
    else:
        items = detail if isinstance(detail, list) else [detail]
        dotted = ".".join(p for p in path if p != "non_field_errors")
        for item in items:
            yield dotted, str(item)
