"""DRF parsers with netops' input rules (see :mod:`netops.input_guard`).

A module of its own, importing the rules only when parsing: DRF imports its parser classes while
``rest_framework.views`` loads, which :mod:`netops.errors` (and so the rules) itself imports.
"""

from __future__ import annotations

from typing import Any

from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with netops' rules: too deep, NUL or lone surrogate -> 400 naming the place."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        from netops.errors import InvalidInput
        from netops.input_guard import loads_json

        encoding = (parser_context or {}).get("encoding", "utf-8")
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise InvalidInput("the body is not valid JSON (not UTF-8 text)") from None
        return loads_json(text)
