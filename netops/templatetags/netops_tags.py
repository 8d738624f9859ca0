"""Small template helpers."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    """``{{ counts|get_item:state }}``."""
    return mapping.get(key)


@register.filter
def as_text(value: Any) -> Any:
    """A diff value as a reviewer reads it: a list joined with commas (``none`` when empty)."""
    if isinstance(value, list | tuple):
        return ", ".join(str(as_text(v)) for v in value) if value else "none"
    return value
