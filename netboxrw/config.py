"""The NetBox client for the current settings (None when NetBox is not configured)."""

from __future__ import annotations

from django.conf import settings

from netboxrw.client import NetBoxClient, NetBoxConfig

_client: NetBoxClient | None = None


def netbox_configured() -> bool:
    return bool(settings.NETBOX_URL and settings.NETBOX_TOKEN)


def netbox_client() -> NetBoxClient | None:
    """One shared client per configuration (rebuilt when the settings change, as in tests)."""
    global _client
    if not netbox_configured():
        return None
    config = NetBoxConfig(
        url=settings.NETBOX_URL,
        token=settings.NETBOX_TOKEN,
        timeout=settings.NETBOX_TIMEOUT,
        bulk_timeout=settings.NETBOX_BULK_TIMEOUT,
        verify_tls=settings.NETBOX_VERIFY_TLS,
    )
    if _client is None or _client.config != config:
        from netops.logs import register_secret_value

        register_secret_value(config.token)
        _client = NetBoxClient(config)
    return _client
