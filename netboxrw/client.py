"""The NetBox client: pynetbox's session and auth, with what a reviewed-change workflow needs on top.

pynetbox handles URL building, v1 (``Token``) and v2 (``Bearer nbt_…``) tokens and its session. Its
``Record.save()`` cannot send ``If-Match`` nor report the ETag, and its reads page with small
pages, so reads and conditional writes go through pynetbox's own ``http_session`` here:
- every filter and field name is checked against NetBox's API index before sending, because NetBox
  silently ignores unknown ones (``?foo=bar`` returns everything; ``device_role`` is dropped);
- reads page with large pages and count requests (plans must read in bulk);
- writes carry ``changelog_message`` and, for updates and deletes, ``If-Match`` (412 when stale);
- every failure becomes one :class:`NetBoxError` with the status, field errors and a readable message.

Only :mod:`netboxrw.executor` calls the write methods (and the seeder's ``--purge``, which deletes
only what carries its tag); ``tests/security/test_netbox_writes_only_executor.py`` keeps it so.
There are deliberately no convenience writers (``ensure_*``) here: a write outside the executor
would bypass review, drift check and rollback.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pynetbox
import requests
from requests.adapters import HTTPAdapter

from netops.errors import UpstreamError

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
LOOKUPS = frozenset(
    [
        "n",
        "ic",
        "nic",
        "iew",
        "niew",
        "isw",
        "nisw",
        "ie",
        "nie",
        "empty",
        "regex",
        "iregex",
        "lt",
        "lte",
        "gt",
        "gte",
    ]
)
# Names the API does not declare but accepts on every list or write.
_QUERY_CONTROLS = frozenset({"limit", "offset", "ordering", "brief", "fields", "omit", "q", "id"})
_WRITE_CONTROLS = frozenset({"changelog_message", "id"})
_RENAMED = {"device_role": "role", "device_role_id": "role_id"}


class NetBoxError(UpstreamError):
    """NetBox refused or failed a request; ``field_errors`` maps fields (or ``__all__``/index) to messages."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        field_errors: dict[str, Any] | list[Any] | None = None,
    ) -> None:
        http_status = 400 if status in (400, 404, 409, 412) else 504 if status is None else 502
        super().__init__(message, http_status)
        self.status = status
        self.field_errors = field_errors or {}


@dataclass(frozen=True)
class NetBoxConfig:
    """Where NetBox is; ``token`` is the resolved secret (v1 hex or v2 ``nbt_…``)."""

    url: str
    token: str
    timeout: float = 15.0
    verify_tls: bool = True
    # Bulk writes of hundreds of objects (a seed, an approved change) take far longer than a read.
    bulk_timeout: float = 300.0


@cache
def api_index() -> dict[str, Any]:
    """Filter and field names per endpoint, from NetBox's OpenAPI schema (see ``data/netbox_api.json``)."""
    return json.loads((Path(__file__).parent / "data" / "netbox_api.json").read_text())["endpoints"]


class _TimeoutAdapter(HTTPAdapter):
    """requests has no session-wide timeout; every NetBox call must be bounded."""

    def __init__(self, timeout: float) -> None:
        super().__init__(pool_connections=4, pool_maxsize=16, max_retries=0)
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


@dataclass
class Page:
    count: int
    results: list[dict[str, Any]]


class NetBoxClient:
    """One NetBox instance. Thread-safe for concurrent reads; counts its HTTP requests."""

    def __init__(self, config: NetBoxConfig) -> None:
        self.config = config
        self.api = pynetbox.api(config.url.rstrip("/"), token=config.token)
        session = self.api.http_session
        session.verify = config.verify_tls
        adapter = _TimeoutAdapter(config.timeout)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(
            {
                "Authorization": f"Bearer {config.token}"
                if config.token.startswith("nbt_")
                else f"Token {config.token}",
                "Accept": "application/json",
            }
        )
        self._lock = threading.Lock()
        self.requests_made = 0

    # --- plumbing ------------------------------------------------------------------------------

    def _url(self, endpoint: str, object_id: int | None = None) -> str:
        base = f"{self.api.base_url}/{endpoint.strip('/')}/"
        return f"{base}{object_id}/" if object_id is not None else base

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        with self._lock:
            self.requests_made += 1
        timeout = timeout or self.config.timeout
        try:
            response = self.api.http_session.request(
                method, url, params=params, json=body, headers=headers or {}, timeout=timeout
            )
        except requests.Timeout:
            raise NetBoxError(
                f"NetBox at {self.config.url} did not answer within {timeout:g} s", status=None
            ) from None
        except requests.RequestException as exc:
            raise NetBoxError(
                f"cannot reach NetBox at {self.config.url}: {type(exc).__name__}", status=None
            ) from None
        if response.status_code >= 400:
            raise _error_from(method, url, response)
        return response

    # --- validation ----------------------------------------------------------------------------

    def check_endpoint(self, endpoint: str) -> dict[str, Any]:
        info = api_index().get(endpoint.strip("/"))
        if info is None:
            raise NetBoxError(f"unknown NetBox object type {endpoint!r}", status=400)
        return info

    def check_filters(self, endpoint: str, filters: dict[str, Any]) -> None:
        """Refuse filter names NetBox would silently ignore (and so return everything)."""
        known = set(self.check_endpoint(endpoint)["filters"]) | _QUERY_CONTROLS
        for name in filters:
            base, _, lookup = name.partition("__")
            if name in _RENAMED:
                raise NetBoxError(
                    f"filter {name!r} is not used by NetBox 4: use {_RENAMED[name]!r}", status=400
                )
            if base not in known or (lookup and lookup not in LOOKUPS):
                raise NetBoxError(
                    f"unknown filter {name!r} for {endpoint}",
                    status=400,
                    field_errors={name: ["unknown filter"]},
                )

    def check_fields(self, endpoint: str, data: dict[str, Any]) -> None:
        """Refuse body fields NetBox would silently drop (``device_role`` instead of ``role`` ...)."""
        info = self.check_endpoint(endpoint)
        known = set(info.get("fields", ())) | _WRITE_CONTROLS
        for name in data:
            if name in _RENAMED:
                raise NetBoxError(
                    f"field {name!r} is not used by NetBox 4: use {_RENAMED[name]!r}", status=400
                )
            if name not in known:
                raise NetBoxError(
                    f"unknown field {name!r} for {endpoint}",
                    status=400,
                    field_errors={name: ["unknown field"]},
                )

    # --- reads ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._request("GET", self._url("status")).json()

    def page(
        self,
        endpoint: str,
        filters: dict[str, Any] | None = None,
        *,
        fields: list[str] | None = None,
        brief: bool = False,
        limit: int = 50,
        offset: int = 0,
        ordering: str | None = None,
    ) -> Page:
        """One page of objects matching ``filters`` (names validated)."""
        filters = dict(filters or {})
        self.check_filters(endpoint, filters)
        params: dict[str, Any] = {**filters, "limit": limit, "offset": offset}
        if fields:
            params["fields"] = ",".join(fields)
        if brief:
            params["brief"] = "true"
        if ordering:
            params["ordering"] = ordering
        body = self._request("GET", self._url(endpoint), params=params).json()
        return Page(count=body["count"], results=body["results"])

    def fetch_all(
        self, endpoint: str, filters: dict[str, Any] | None = None, *, fields: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every object matching ``filters``, in pages of ``PAGE_SIZE`` (one request per page)."""
        results: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.page(endpoint, filters, fields=fields, limit=PAGE_SIZE, offset=offset)
            results += page.results
            offset += PAGE_SIZE
            if offset >= page.count or not page.results:
                return results

    def get(self, endpoint: str, object_id: int) -> tuple[dict[str, Any], str]:
        """One object and its ETag (NetBox sends ETags only on detail reads)."""
        response = self._request("GET", self._url(endpoint, object_id))
        return response.json(), response.headers.get("ETag", "")

    # --- writes --------------------------------------------------------------------------------

    def create(self, endpoint: str, data: dict[str, Any], *, message: str = "") -> dict[str, Any]:
        self.check_fields(endpoint, data)
        body = {**data, "changelog_message": message} if message else data
        return self._request("POST", self._url(endpoint), body=body).json()

    def bulk_create(
        self, endpoint: str, items: list[dict[str, Any]], *, message: str = ""
    ) -> list[dict[str, Any]]:
        """Create all or nothing (NetBox's bulk POST is atomic; its errors are keyed by index)."""
        for item in items:
            self.check_fields(endpoint, item)
        body = [{**item, "changelog_message": message} if message else item for item in items]
        return self._request("POST", self._url(endpoint), body=body, timeout=self.config.bulk_timeout).json()

    def update(
        self,
        endpoint: str,
        object_id: int,
        data: dict[str, Any],
        *,
        etag: str | None = None,
        message: str = "",
    ) -> dict[str, Any]:
        """PATCH one object; with ``etag`` NetBox refuses (412) if it changed since it was read."""
        self.check_fields(endpoint, data)
        body = {**data, "changelog_message": message} if message else data
        headers = {"If-Match": etag} if etag else None
        return self._request("PATCH", self._url(endpoint, object_id), body=body, headers=headers).json()

    def delete(self, endpoint: str, object_id: int, *, etag: str | None = None, message: str = "") -> None:
        headers = {"If-Match": etag} if etag else None
        body = {"changelog_message": message} if message else None
        self._request("DELETE", self._url(endpoint, object_id), body=body, headers=headers)

    def bulk_update(
        self, endpoint: str, items: list[dict[str, Any]], *, message: str = ""
    ) -> list[dict[str, Any]]:
        """PATCH many objects in one request (each item has its ``id``; atomic; no ``If-Match``)."""
        for item in items:
            self.check_fields(endpoint, item)
        body = [{**item, "changelog_message": message} if message else item for item in items]
        return self._request("PATCH", self._url(endpoint), body=body, timeout=self.config.bulk_timeout).json()

    def bulk_delete(self, endpoint: str, ids: list[int], *, message: str = "") -> None:
        if not ids:
            return
        body = [{"id": i, "changelog_message": message} if message else {"id": i} for i in ids]
        self._request("DELETE", self._url(endpoint), body=body, timeout=self.config.bulk_timeout)

    # --- lookups -------------------------------------------------------------------------------

    def find_one(self, endpoint: str, filters: dict[str, Any]) -> dict[str, Any] | None:
        """The single object matching ``filters``, None if none; an error if the match is ambiguous."""
        page = self.page(endpoint, filters, limit=2)
        if page.count > 1:
            raise NetBoxError(
                f"{page.count} {endpoint} objects match {filters}; be more specific", status=409
            )
        return page.results[0] if page.results else None


def _error_from(method: str, url: str, response: requests.Response) -> NetBoxError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:300]
    status = response.status_code
    path = url.split("/api/", 1)[-1]
    if status == 403:
        detail = body.get("detail") if isinstance(body, dict) else body
        return NetBoxError(f"NetBox refused the token (403): {detail}", status=403)
    if status == 412:
        return NetBoxError(
            f"{path} changed in NetBox since it was read (412 precondition failed)", status=412
        )
    if status == 404:
        return NetBoxError(f"{path} does not exist in NetBox (404)", status=404)
    if isinstance(body, dict):
        detail = body.get("detail")
        errors = body.get("errors", {k: v for k, v in body.items() if k != "detail"})
        message = _describe_errors(errors) or str(detail or body)
        if detail and message != detail:
            message = f"{detail} {message}"
        return NetBoxError(
            f"NetBox {method} {path} failed ({status}): {message}", status=status, field_errors=errors
        )
    if isinstance(body, list):
        return NetBoxError(
            f"NetBox {method} {path} failed ({status}): {_describe_errors(body)}",
            status=status,
            field_errors=body,
        )
    return NetBoxError(f"NetBox {method} {path} failed ({status}): {body}", status=status)


def _describe_errors(errors: Any) -> str:
    """``{"name": ["required"]}`` / ``[{"index": 1, "errors": {...}}]`` as one readable line."""
    if isinstance(errors, dict):
        return "; ".join(
            f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errors.items()
        )
    if isinstance(errors, list):
        parts = []
        for position, item in enumerate(errors):
            if isinstance(item, dict) and "errors" in item:
                parts.append(
                    f"item {item.get('index', item.get('id', position))}: {_describe_errors(item['errors'])}"
                )
            elif isinstance(item, dict) and item:
                parts.append(f"item {position}: {_describe_errors(item)}")
        return "; ".join(parts)
    return str(errors)
