"""DRF permission classes shared by every API of netops."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request


class StrictDjangoModelPermissions(DjangoModelPermissions):
    """Django model permissions where reading also needs the ``view_`` permission.

    DRF's default lets any authenticated user read; the registry holds endpoints and credential
    references that not every engineer should see, so reads are permissioned too. A view may map
    an action to the permission of another method with ``action_permission_methods`` (a health
    check is a POST that changes a server, so it needs ``change_``, not ``add_``).
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or (not request.user.is_authenticated and self.authenticated_users_only):
            return False
        if getattr(view, "_ignore_model_permissions", False):
            return True
        overrides: dict[str, str] = getattr(view, "action_permission_methods", {})
        method = overrides.get(getattr(view, "action", None) or "", request.method or "GET")
        queryset = self._queryset(view)
        perms = self.get_required_permissions(method, queryset.model)
        return bool(request.user.has_perms(perms))
