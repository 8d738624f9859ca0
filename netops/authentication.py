"""DRF authentication classes that also name the caller in the log context.

DRF authenticates inside the view, after the middleware that names the user for log lines has
run, so API log lines would otherwise say "anonymous". These subclasses fix that at the source.
"""

from __future__ import annotations

from typing import Any

from rest_framework import authentication
from rest_framework.request import Request

from netops.logs import set_log_user


def _named(result: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
    if result is not None:
        set_log_user(result[0].get_username())
    return result


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>`` (DRF tokens)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        return _named(super().authenticate(request))


class SessionAuthentication(authentication.SessionAuthentication):
    """The browser session, with CSRF enforced for unsafe methods."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        return _named(super().authenticate(request))
