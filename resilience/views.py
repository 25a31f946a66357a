"""Dashboard page of the circuit breakers."""

import logging

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from resilience.api import breaker_view
from resilience.models import Target

logger = logging.getLogger(__name__)


@login_required
def breakers(request: HttpRequest) -> HttpResponse:
    tiles = []
    store_error = ""
    for target in Target.objects.all():
        try:
            tiles.append(breaker_view(target))
        except Exception as exc:
            store_error = str(exc)
            tiles.append({"target": target.name, "state": "unknown"})
    context = {"tiles": tiles, "store_error": store_error}
    return render(request, "resilience/breakers.html", context)
