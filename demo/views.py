"""HTTP endpoints of the demo services, the fault API and the faults page.

The demo services stand in for other teams' services, so their views skip
the control plane's authentication and CSRF checks and stay out of the
OpenAPI schema. Their errors still use the project's problem+json shape.
"""

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.permissions import is_operator
from demo import faults, services, tcc
from demo.idempotency import run_once
from demo.models import SERVICES, BusinessRecord, FaultSetting
from demo.serializers import (
    RECORD_SERIALIZERS,
    FaultSettingSerializer,
    ReferenceSerializer,
)
from demo.services import ServiceError

logger = logging.getLogger(__name__)


# --- demo services ----------------------------------------------------------


@extend_schema(exclude=True)
class DemoServiceView(APIView):
    """Base of the demo service endpoints: no login, no CSRF, one service."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    service = ""

    def record_response(self, record: BusinessRecord, status_code: int) -> Response:
        data = RECORD_SERIALIZERS[self.service](record).data
        return Response(data, status=status_code)


def _checked_reference(reference: str) -> str:
    """Validate a reference from the URL path like one from a body."""
    serializer = ReferenceSerializer(data={"reference": reference})
    serializer.is_valid(raise_exception=True)
    return str(serializer.validated_data["reference"])


class ActionView(DemoServiceView):
    """POST a body that creates a record; 201 with the record."""

    input_serializer: type[serializers.Serializer] = serializers.Serializer
    operation: Callable[..., BusinessRecord] | None = None

    def post(self, request: Request) -> Response:
        serializer = self.input_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        assert self.operation is not None
        operation = self.operation

        def apply() -> Response:
            record = operation(**serializer.validated_data)
            return self.record_response(record, status.HTTP_201_CREATED)

        return run_once(request, self.service, apply)


class ReferenceActionView(DemoServiceView):
    """POST to a reference's URL: a compensation or a confirmation; 200."""

    operation: Callable[[str], BusinessRecord] | None = None

    def post(self, request: Request, reference: str) -> Response:
        reference = _checked_reference(reference)
        assert self.operation is not None
        operation = self.operation

        def apply() -> Response:
            return self.record_response(operation(reference), status.HTTP_200_OK)

        return run_once(request, self.service, apply)


class TccTryView(DemoServiceView):
    """POST a Try-Confirm-Cancel try; 201 with the branch, 409 after a cancel."""

    input_serializer: type[serializers.Serializer] = serializers.Serializer
    operation: Callable[..., dict[str, Any]] | None = None

    def post(self, request: Request) -> Response:
        serializer = self.input_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        assert self.operation is not None
        operation = self.operation

        def apply() -> Response:
            body = operation(**serializer.validated_data)
            return Response(body, status=status.HTTP_201_CREATED)

        return run_once(request, self.service, apply)


class TccPhaseTwoView(DemoServiceView):
    """POST a confirm or cancel to a transaction's URL; 200 with the branch."""

    operation: Callable[[str], dict[str, Any]] | None = None

    def post(self, request: Request, reference: str) -> Response:
        reference = _checked_reference(reference)
        assert self.operation is not None
        operation = self.operation

        def apply() -> Response:
            return Response(operation(reference), status=status.HTTP_200_OK)

        return run_once(request, self.service, apply)


class TccBranchView(DemoServiceView):
    """GET a transaction's branch on this service; 404 if it never saw it."""

    def get(self, request: Request, reference: str) -> Response:
        reference = _checked_reference(reference)
        body = tcc.find_branch(self.service, reference)
        if body is None:
            raise NotFound(
                f"The {self.service} service has no branch of transaction "
                f"{reference!r}."
            )
        return Response(body)


class RecordView(DemoServiceView):
    """GET one record by reference; 404 if the service never saw it."""

    def get(self, request: Request, reference: str) -> Response:
        reference = _checked_reference(reference)
        try:
            record = services.get_record(self.service, reference)
        except ServiceError as exc:
            raise NotFound(exc.detail) from exc
        return self.record_response(record, status.HTTP_200_OK)


class StateView(DemoServiceView):
    """GET the service's summary: counts, totals and duplicate effects."""

    def get(self, request: Request) -> Response:
        return Response(services.service_state(self.service))


# --- fault API --------------------------------------------------------------


def _known_service(service: str) -> str:
    if service not in SERVICES:
        raise NotFound(
            f"No demo service is named {service!r}. The demo services are "
            f"{', '.join(SERVICES)}."
        )
    return service


class FaultListView(APIView):
    """The injected faults of all four demo services."""

    @extend_schema(responses=FaultSettingSerializer(many=True))
    def get(self, request: Request) -> Response:
        settings_by_service = {s.service: s for s in FaultSetting.objects.all()}
        rows = [
            settings_by_service.get(service) or faults.get_setting(service)
            for service in SERVICES
        ]
        return Response(FaultSettingSerializer(rows, many=True).data)


class FaultDetailView(APIView):
    """The injected faults of one demo service; operators change them."""

    @extend_schema(responses=FaultSettingSerializer)
    def get(self, request: Request, service: str) -> Response:
        setting = faults.get_setting(_known_service(service))
        return Response(FaultSettingSerializer(setting).data)

    @extend_schema(request=FaultSettingSerializer, responses=FaultSettingSerializer)
    def put(self, request: Request, service: str) -> Response:
        return self._update(request, service, partial=False)

    @extend_schema(request=FaultSettingSerializer, responses=FaultSettingSerializer)
    def patch(self, request: Request, service: str) -> Response:
        return self._update(request, service, partial=True)

    def _update(self, request: Request, service: str, partial: bool) -> Response:
        setting = faults.get_setting(_known_service(service))
        serializer = FaultSettingSerializer(setting, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        _save_fault(serializer, request.user)
        return Response(serializer.data)


def _save_fault(serializer: FaultSettingSerializer, user: Any) -> FaultSetting:
    setting = serializer.save()
    faults.clear_cache(setting.service)
    logger.info(
        "service=%s faults set: error_rate=%s latency_ms=%s by user=%s",
        setting.service,
        setting.error_rate,
        setting.latency_ms,
        getattr(user, "username", None),
    )
    return setting


# --- faults page ------------------------------------------------------------


@login_required
def faults_page(request: HttpRequest) -> HttpResponse:
    """Show each service's faults and state; operators change the faults."""
    errors: dict[str, list[str]] = {}
    submitted: dict[str, str] = {}
    failed_service = ""

    if request.method == "POST":
        service = request.POST.get("service", "")
        if not is_operator(request.user):
            messages.error(request, "Changing faults needs the operator role.")
            return redirect("faults")
        if service not in SERVICES:
            messages.error(request, f"No demo service is named {service!r}.")
            return redirect("faults")
        submitted = {
            name: request.POST.get(name, "").strip()
            for name in ("error_rate", "latency_ms")
        }
        serializer = FaultSettingSerializer(faults.get_setting(service), data=submitted)
        if serializer.is_valid():
            setting = _save_fault(serializer, request.user)
            messages.success(
                request,
                f"Faults of {service} set: error rate {setting.error_rate:g}, "
                f"latency {setting.latency_ms} ms.",
            )
            return redirect("faults")
        errors = _field_errors(serializer.errors, submitted)
        failed_service = service

    rows = [
        _page_row(service, failed_service, submitted, errors) for service in SERVICES
    ]
    context = {"rows": rows, "can_edit": is_operator(request.user)}
    return render(request, "demo/faults.html", context, status=400 if errors else 200)


def _page_row(
    service: str,
    failed_service: str,
    submitted: dict[str, str],
    errors: dict[str, list[str]],
) -> dict[str, Any]:
    setting = faults.get_setting(service)
    values = {"error_rate": setting.error_rate, "latency_ms": setting.latency_ms}
    failed = service == failed_service
    return {
        "service": service,
        "setting": setting,
        "values": submitted if failed else values,
        "errors": errors if failed else {},
        "state": services.service_state(service),
    }


def _field_errors(detail: Any, submitted: dict[str, str]) -> dict[str, list[str]]:
    """Return the serializer's messages per field, each naming the value."""
    return {
        field: [f"{message} (got {submitted.get(field, '')!r})" for message in items]
        for field, items in detail.items()
    }
