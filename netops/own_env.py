"""The environment reader of the settings, which remembers every variable netops reads for itself.

netops' own configuration (``SECRET_KEY``, ``DATABASE_URL``, ``NETBOX_TOKEN``, ...) must never be
resolvable as a secret reference (:mod:`netops.secrets`): whoever could register ``env:SECRET_KEY``
could send it anywhere. A hand-kept list of those names would drift as settings are added, so the
settings read the environment through :class:`OwnEnv`, and the names it was asked for *are* the
list. This module imports nothing of Django: the settings module loads it first.
"""

from __future__ import annotations

from typing import Any

import environ


class OwnEnv(environ.Env):
    """``environ.Env`` that records the name of every variable it is asked for in ``names_read``."""

    def __init__(self, **scheme: Any) -> None:
        super().__init__(**scheme)
        self.names_read: set[str] = set()

    def get_value(
        self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False
    ) -> Any:
        # Every typed reader (str, bool, int, list, db_url, ...) and env("NAME") come through here.
        self.names_read.add(f"{self.prefix}{var}")
        return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
