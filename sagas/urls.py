"""URLs of the saga pages and of /api/sagas/ and /api/runs/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from sagas import api, views

router = SimpleRouter()
router.register("sagas", api.SagaDefinitionViewSet, basename="api-saga")
router.register("runs", api.SagaRunViewSet, basename="api-run")

api_urlpatterns = router.urls

urlpatterns = [
    path("", views.overview, name="overview"),
    path("runs/", views.run_list, name="runs"),
    path("runs/start/", views.start_run, name="start-run"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/<str:name>/", views.run_action, name="run-action"),
]
