"""App config for netboxrw: NetBox tools, the change-review queue and the executor."""

from __future__ import annotations

from django.apps import AppConfig


class NetboxrwConfig(AppConfig):
    name = "netboxrw"
    verbose_name = "NetBox changes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The NetBox tools join the tool catalog as a built-in source.
        from netboxrw import tools
        from netboxrw.config import netbox_client, netbox_configured
        from netops.health import ReadinessCheck, register_check

        tools.register()
        _register_periodic_jobs()

        def netbox_status() -> str:
            client = netbox_client()
            assert client is not None
            return f"NetBox {client.status().get('netbox-version', '?')}"

        register_check(ReadinessCheck("netbox", netbox_status, enabled=netbox_configured))


def _register_periodic_jobs() -> None:
    from django.conf import settings

    from netboxrw import tasks
    from netops.scheduling import PeriodicJob, register_periodic

    register_periodic(
        PeriodicJob(
            "recover_change_requests",
            tasks.recover_change_requests,
            lambda: settings.CHANGE_RECOVERY_INTERVAL,
        )
    )
    register_periodic(
        PeriodicJob(
            "expire_change_requests", tasks.expire_change_requests, lambda: settings.CHANGE_EXPIRY_INTERVAL
        )
    )
