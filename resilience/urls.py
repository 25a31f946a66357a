"""URLs of the resilience pages and of the targets, policies and breakers API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from resilience import api, views

router = SimpleRouter()
router.register("targets", api.TargetViewSet, basename="api-target")
router.register("policies", api.PolicyViewSet, basename="api-policy")
router.register("breakers", api.BreakerViewSet, basename="api-breaker")
router.register("bulkheads", api.BulkheadViewSet, basename="api-bulkhead")
router.register("ratelimiters", api.RateLimiterViewSet, basename="api-ratelimiter")

api_urlpatterns = [
    *router.urls,
    path("calls/", api.CallView.as_view(), name="call"),
]

urlpatterns = [
    path("breakers/", views.breakers, name="breakers"),
    path(
        "breakers/<slug:target>/<str:action>/",
        views.breaker_action,
        name="breaker-action",
    ),
    path("bulkheads/", views.bulkheads, name="bulkheads"),
    path("policies/", views.policy_list, name="policies"),
    path("policies/<slug:target>/", views.policy_edit, name="policy-edit"),
]
