"""Roles of the API: anyone logged in reads, operators write."""

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


def is_operator(user: Any) -> bool:
    """Return whether the user may change state (superuser or operator)."""
    if not user or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return bool(user.groups.filter(name=settings.OPERATOR_GROUP).exists())


class IsOperatorOrReadOnly(BasePermission):
    """Let authenticated users read and operators write.

    An anonymous request fails authentication (401) before this check, so
    a logged-in reader who writes gets 403.
    """

    message = "This action needs the operator role."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if request.method in SAFE_METHODS:
            return True
        return is_operator(request.user)
