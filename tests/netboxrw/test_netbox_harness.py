"""The harness gives a real, working NetBox 4.7: both token versions, the REST API, ETags, pynetbox."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pynetbox
import pytest

from tests.support.netbox_server import PG_HOST, PG_PORT, PG_USER, NetBoxInstance, start_netbox, template_name


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _device(client: httpx.Client) -> dict[str, Any]:
    """Region -> site -> manufacturer -> device type -> device role -> device, all with unique names."""
    tag = uuid.uuid4().hex[:8]
    region = _create(client, "dcim/regions/", {"name": f"Region {tag}", "slug": f"region-{tag}"})
    site = _create(
        client,
        "dcim/sites/",
        {"name": f"Site {tag}", "slug": f"site-{tag}", "status": "active", "region": region["id"]},
    )
    manufacturer = _create(client, "dcim/manufacturers/", {"name": f"Acme {tag}", "slug": f"acme-{tag}"})
    device_type = _create(
        client,
        "dcim/device-types/",
        {"manufacturer": manufacturer["id"], "model": f"AX-{tag}", "slug": f"ax-{tag}", "u_height": 1},
    )
    role = _create(
        client, "dcim/device-roles/", {"name": f"Access {tag}", "slug": f"access-{tag}", "color": "2196f3"}
    )
    return _create(
        client,
        "dcim/devices/",
        {
            "name": f"sw-{tag}",
            "device_type": device_type["id"],
            "role": role["id"],  # NetBox 4.x: `role`, not `device_role`
            "site": site["id"],
            "status": "planned",
            "serial": f"SN-{tag}",
        },
    )


def test_status_with_the_v2_token_reports_netbox_4_7(netbox: NetBoxInstance) -> None:
    assert netbox.token_v2.startswith("nbt_") and "." in netbox.token_v2
    response = httpx.get(
        f"{netbox.url}/api/status/", headers={"Authorization": f"Bearer {netbox.token_v2}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["netbox-version"].startswith("4.7.")
    assert status["netbox-version"] == netbox.version
    assert status["plugins"] == {}
    assert response.headers["API-Version"] == "4.7"


def test_the_v1_token_works_too(netbox: NetBoxInstance) -> None:
    assert len(netbox.token_v1) == 40
    int(netbox.token_v1, 16)  # 40 hex characters
    headers = {"Authorization": f"Token {netbox.token_v1}"}
    assert httpx.get(f"{netbox.url}/api/status/", headers=headers, timeout=30).status_code == 200
    assert httpx.get(f"{netbox.url}/api/dcim/devices/", headers=headers, timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        ("Bearer nbt_AAAAAAAAAAAA.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "Invalid v2 token"),
        ("Token " + "0" * 40, "Invalid v1 token"),
        (None, "Authentication credentials were not provided."),
    ],
)
def test_a_bad_or_missing_token_gets_403(
    netbox: NetBoxInstance, authorization: str | None, detail: str
) -> None:
    headers = {"Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = httpx.get(f"{netbox.url}/api/dcim/devices/", headers=headers, timeout=30)
    assert response.status_code == 403  # as recorded (31-..., 32-...): not 401
    assert response.json() == {"detail": detail}


def test_a_device_built_through_the_rest_api_reads_back(netbox: NetBoxInstance) -> None:
    with netbox.client() as client:
        device = _device(client)
        response = client.get(f"dcim/devices/{device['id']}/")
    assert response.status_code == 200
    read = response.json()
    assert read["name"] == device["name"]
    assert read["role"]["id"] == device["role"]["id"]
    assert read["site"]["id"] == device["site"]["id"]
    assert read["status"]["value"] == "planned"


def test_a_detail_get_carries_a_weak_etag_and_a_list_does_not(netbox: NetBoxInstance) -> None:
    with netbox.client() as client:
        device = _device(client)
        detail = client.get(f"dcim/devices/{device['id']}/")
        listing = client.get("dcim/devices/", params={"id": device["id"]})
    assert detail.headers["ETag"].startswith('W/"')
    assert "ETag" not in listing.headers
    assert listing.json()["count"] == 1


def test_pynetbox_lists_devices_with_either_token(netbox: NetBoxInstance) -> None:
    with netbox.client() as client:
        device = _device(client)
    for token in (netbox.token_v2, netbox.token_v1):
        api = pynetbox.api(netbox.url, token=token)
        assert api.status()["netbox-version"] == netbox.version
        names = [d.name for d in api.dcim.devices.all()]
        assert device["name"] in names
        assert api.dcim.devices.get(device["id"]).serial == device["serial"]


def test_a_second_instance_is_isolated_can_be_emptied_and_stop_drops_it(netbox: NetBoxInstance) -> None:
    # truncate_data() and stop() act on an instance of this test's own: the session's one is shared.
    other = start_netbox(netbox.version)
    try:
        assert other.database not in (netbox.database, template_name(netbox.version))
        name = _unique("only-here")
        with other.client() as client:
            _create(client, "dcim/manufacturers/", {"name": name, "slug": name})
        with netbox.client() as client:
            assert client.get("dcim/manufacturers/", params={"slug": name}).json()["count"] == 0

        with other.client() as client:
            _device(client)
            other.truncate_data()
            assert client.get("dcim/devices/").json()["count"] == 0
            assert client.get("dcim/manufacturers/").json()["count"] == 0
            assert client.get("core/object-changes/").json()["count"] == 0
            device = _device(client)  # the tokens survive, ids restart, the emptied tables take new rows
            assert device["id"] == 1
        with other.client(token_version=1) as client:
            assert client.get("dcim/devices/").json()["count"] == 1
    finally:
        other.stop()

    assert other.process.poll() is not None
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (other.database,)
        ).fetchone()
    assert row == (0,)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{other.url}/api/status/", timeout=5)
