"""URL map: dashboard pages, the REST API under /api/, the demo services."""

from typing import Any

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from controlplane import dashboard, outbox_api, views
from controlplane.idempotency_api import IdempotencyRecordViewSet
from controlplane.metrics import metrics_view
from controlplane.traceforward import tracecontext_forward
from controlplane.traces_api import TraceView
from demo import urls as demo_urls
from resilience import urls as resilience_urls
from sagas import urls as saga_urls

router = SimpleRouter()
router.register(
    "idempotency-records", IdempotencyRecordViewSet, basename="idempotency-record"
)

api_patterns = [
    path("auth/token/", views.ObtainTokenView.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"
    ),
    *saga_urls.api_urlpatterns,
    *resilience_urls.api_urlpatterns,
    *demo_urls.api_urlpatterns,
    path("traces/<str:trace_id>/", TraceView.as_view(), name="api-trace"),
    path("outbox/", outbox_api.OutboxSummaryView.as_view(), name="api-outbox"),
    path(
        "outbox/events/",
        outbox_api.OutboxEventListView.as_view(),
        name="api-outbox-events",
    ),
    path(
        "outbox/events/<uuid:event_id>/redeliver/",
        outbox_api.OutboxEventRedeliverView.as_view(),
        name="api-outbox-event-redeliver",
    ),
    *router.urls,
]


def _api_links(patterns: list[Any]) -> dict[str, str]:
    """Map each parameterless route under /api/ to its URL name."""
    links = {}
    for pattern in patterns:
        route = str(pattern.pattern)
        if pattern.name and "<" not in route:
            # Router routes are regular expressions such as ^runs/$.
            links[route.strip("^$/")] = pattern.name
    return links


views.ApiRootView.links = _api_links(api_patterns)
api_patterns.insert(0, path("", views.ApiRootView.as_view(), name="api-root"))

urlpatterns = [
    path("", include(saga_urls.urlpatterns)),
    path("", include(resilience_urls.urlpatterns)),
    path("", include(demo_urls.urlpatterns)),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("healthz/", views.healthz, name="healthz"),
    path("idempotency/", dashboard.idempotency_records, name="idempotency-records"),
    path("traces/<str:trace_id>/", dashboard.trace_detail, name="trace-detail"),
    path("outbox/", dashboard.outbox_page, name="outbox"),
    path("metrics", metrics_view, name="metrics"),
    path("api/", include(api_patterns)),
    path("demo/tracecontext/", tracecontext_forward, name="demo-tracecontext-forward"),
    path("demo/", include(demo_urls.service_urlpatterns)),
    path("admin/", admin.site.urls),
]

handler400 = "controlplane.errors.api_bad_request"
handler404 = "controlplane.errors.api_not_found"
handler500 = "controlplane.errors.api_server_error"
