""" "My API keys": an engineer creates and revokes their own keys; a new key is shown once."""

from __future__ import annotations

from typing import cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from netops.errors import ApplicationError
from registry.keys import EXPIRY_DAYS_MAX, RATE_LIMIT_MAX, api_key_create, api_key_revoke
from registry.models import APIKey, PermissionLevel

PAGE = "registry/keys.html"


class KeyForm(forms.Form):
    name = forms.CharField(max_length=50)
    level = forms.ChoiceField(choices=PermissionLevel.choices)
    rate_limit = forms.IntegerField(
        min_value=1, max_value=RATE_LIMIT_MAX, required=False, help_text="Requests per hour (default 1000)."
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=EXPIRY_DAYS_MAX, required=False, help_text="Empty: never expires."
    )


def _context(user: User, form: KeyForm, new_key: str = "", error: str = "") -> dict[str, object]:
    return {
        "keys": APIKey.objects.filter(owner=user).order_by("-created"),
        "form": form,
        "new_key": new_key,
        "error": error,
    }


@require_http_methods(["GET", "POST"])
@login_required
def my_keys(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)
    form = KeyForm(request.POST or None, initial={"level": PermissionLevel.READ_ONLY})
    new_key, error = "", ""
    if request.method == "POST" and form.is_valid():
        level = form.cleaned_data["level"]
        if level == PermissionLevel.ADMIN and not user.is_superuser:
            error = "only administrators may create admin-level keys"
        else:
            try:
                _, new_key = api_key_create(
                    owner=user,
                    name=form.cleaned_data["name"],
                    level=level,
                    rate_limit=form.cleaned_data["rate_limit"],
                    expires_in_days=form.cleaned_data["expires_in_days"],
                )
                form = KeyForm(initial={"level": PermissionLevel.READ_ONLY})
            except ApplicationError as exc:
                error = str(exc)
    return render(
        request, PAGE, _context(user, form, new_key, error), status=400 if error or form.errors else 200
    )


@require_POST
@login_required
def revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    user = cast(User, request.user)
    key = APIKey.objects.filter(owner=user, prefix=prefix).first()
    if key is None:
        raise Http404("no such key")
    api_key_revoke(key=key)
    return render(request, PAGE, _context(user, KeyForm(initial={"level": PermissionLevel.READ_ONLY})))
