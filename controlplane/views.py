"""Views of the project itself: log-in, API tokens and the health check."""

from typing import Any

from django.contrib.auth import views as auth_views
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api import check_query_params


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


class ObtainTokenView(APIView):
    """Exchange a username and password for an API token."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=AuthTokenSerializer,
        responses=inline_serializer("Token", {"token": serializers.CharField()}),
        summary="Get an API token for `Authorization: Token <token>`.",
    )
    def post(self, request: Request) -> Response:
        serializer = AuthTokenSerializer(
            data=request.data, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


def healthz(request: HttpRequest) -> JsonResponse:
    """Report whether the database answers; used by the launcher and tests."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


class ApiRootView(APIView):
    """List the API's collections, so a client can start from /api/.

    Open to anyone, like the schema, because it contains links only and
    names the token endpoint through which a client logs in.
    """

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    # Filled by controlplane.urls: link name to URL name, for the routes
    # under /api/ that take no path parameter.
    links: dict[str, str] = {}

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot", {"links": serializers.DictField(child=serializers.URLField())}
        ),
        summary="List the API's collections and documents.",
    )
    def get(self, request: Request) -> Response:
        check_query_params(request, set())
        links = {
            name: request.build_absolute_uri(reverse(url_name))
            for name, url_name in self.links.items()
        }
        return Response({"links": links})
