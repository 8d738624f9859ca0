"""Paging for list endpoints: ``count`` / ``next`` / ``previous`` / ``results`` with limit and offset."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """NetBox-style ``?limit=&offset=`` paging, capped so one request cannot dump a whole table."""

    default_limit = 50
    max_limit = 1000
