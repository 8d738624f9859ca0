"""Read tools and the client's guard rails, against a real NetBox."""

from __future__ import annotations

from typing import Any

import pytest

from netboxrw.client import NetBoxClient, NetBoxConfig, NetBoxError
from tests.netboxrw.lab import Lab, call_tool, call_tool_error, make_lab
from tests.support.netbox_server import NetBoxInstance

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lab(nb: NetBoxClient) -> Lab:
    lab = make_lab(nb)
    device = nb.create(
        "dcim/devices",
        {
            "name": f"r1-{lab.tag}",
            "site": lab.site["id"],
            "device_type": lab.device_type["id"],
            "role": lab.role["id"],
            "status": "active",
        },
    )
    et1 = nb.create("dcim/interfaces", {"device": device["id"], "name": "et-0/0/1", "type": "10gbase-x-sfpp"})
    nb.create("dcim/interfaces", {"device": device["id"], "name": "et-0/0/2", "type": "10gbase-x-sfpp"})
    net = _net(lab)
    nb.create(
        "ipam/ip-addresses",
        {
            "address": f"{net}.1/31",
            "assigned_object_type": "dcim.interface",
            "assigned_object_id": et1["id"],
        },
    )
    vlan = nb.create("ipam/vlans", {"vid": 100, "name": f"data-{lab.tag}", "site": lab.site["id"]})
    nb.create(
        "ipam/prefixes",
        {
            "prefix": f"{net}.128/25",
            "scope_type": "dcim.site",
            "scope_id": lab.site["id"],
            "vlan": vlan["id"],
        },
    )
    for host in range(129, 134):
        nb.create("ipam/ip-addresses", {"address": f"{net}.{host}/25"})
    return lab


def _net(lab: Lab) -> str:
    """A /24 of this lab's own (NetBox refuses duplicate addresses across the shared instance)."""
    return f"10.{int(lab.tag[:2], 16)}.{int(lab.tag[2:4], 16)}"


def test_get_device_and_its_interfaces(lab: Lab) -> None:
    device = call_tool("netbox_get_device", {"name": f"r1-{lab.tag}"})
    assert device["status"] == "active"
    assert device["site"] == lab.site["name"]
    assert device["role"] == lab.role["name"]
    interfaces = call_tool("netbox_get_device_interfaces", {"device_name": f"r1-{lab.tag}"})
    assert interfaces["count"] == 2
    et1 = next(i for i in interfaces["interfaces"] if i["name"] == "et-0/0/1")
    assert et1["ip_addresses"] == [f"{_net(lab)}.1/31"]


def test_list_devices_filters_and_refuses_unknown_filters(lab: Lab) -> None:
    listed = call_tool(
        "netbox_list_devices", {"filters": {"site": lab.site["slug"], "role": lab.role["slug"]}}
    )
    assert listed["count"] == 1
    assert listed["results"][0]["name"] == f"r1-{lab.tag}"
    error = call_tool_error("netbox_list_devices", {"filters": {"colour": "blue"}})
    assert "unknown filter" in error


def test_find_ip_with_and_without_mask(lab: Lab) -> None:
    with_mask = call_tool("netbox_find_ip", {"address": f"{_net(lab)}.1/31"})
    without = call_tool("netbox_find_ip", {"address": f"{_net(lab)}.1"})
    assert with_mask["count"] == without["count"] == 1
    assert without["results"][0]["assigned_to"] == f"r1-{lab.tag} et-0/0/1"


def test_vlan_by_name_and_prefixes_by_location_with_utilisation(lab: Lab) -> None:
    vlans = call_tool("netbox_get_vlan_by_name", {"name": f"data-{lab.tag}", "site": lab.site["slug"]})
    assert [v["vid"] for v in vlans["results"]] == [100]
    for location in (lab.site["slug"], lab.site["name"], lab.region["slug"]):
        prefixes = call_tool("netbox_get_prefixes_by_location", {"location": location})
        assert prefixes["count"] == 1
        [row] = prefixes["prefixes"]
        assert row["vlan"] == f"data-{lab.tag}"
        assert row["used_ips"] == 5
        assert row["utilisation_percent"] == round(100 * 5 / 126, 1)
    assert "no region, site group or site" in call_tool_error(
        "netbox_get_prefixes_by_location", {"location": "atlantis"}
    )


def test_search_and_generic_objects(lab: Lab) -> None:
    found = call_tool("netbox_search", {"query": lab.tag, "types": ["device", "vlan"]})
    assert found["device"]["count"] == 1 and found["vlan"]["count"] == 1
    objects = call_tool(
        "netbox_get_objects",
        {
            "object_type": "dcim.interfaces",
            "filters": {"device": f"r1-{lab.tag}"},
            "fields": ["id", "name"],
            "ordering": "name",
            "limit": 500,
        },
    )
    assert [o["name"] for o in objects["results"]] == ["et-0/0/1", "et-0/0/2"]
    assert objects["limit"] == 100  # capped
    assert "not used by NetBox 4" in call_tool_error(
        "netbox_get_objects", {"object_type": "dcim.devices", "filters": {"device_role": "core"}}
    )


def test_client_refuses_names_netbox_would_silently_ignore(nb: NetBoxClient, lab: Lab) -> None:
    with pytest.raises(NetBoxError, match="unknown filter 'foo'"):
        nb.page("dcim/devices", {"foo": "bar"})
    with pytest.raises(NetBoxError, match="use 'role'"):
        nb.create("dcim/devices", {"name": "x", "device_role": 1})
    with pytest.raises(NetBoxError, match="unknown field 'bogus'"):
        nb.create("dcim/sites", {"name": "x", "slug": "x", "bogus": 1})
    assert nb.page("dcim/devices", {"name__ic": f"r1-{lab.tag}"}).count == 1  # lookups are fine


def test_client_translates_errors(netbox: NetBoxInstance, nb: NetBoxClient, lab: Lab) -> None:
    bad = NetBoxClient(NetBoxConfig(url=netbox.url, token="0" * 40))
    with pytest.raises(NetBoxError, match=r"refused the token \(403\)") as caught:
        bad.status()
    assert caught.value.status == 403
    device = nb.fetch_all("dcim/devices", {"name": f"r1-{lab.tag}"})[0]
    _, etag = nb.get("dcim/devices", device["id"])
    nb.update("dcim/devices", device["id"], {"serial": "A"}, etag=etag)  # current tag: accepted
    with pytest.raises(NetBoxError, match="412") as stale:
        nb.update("dcim/devices", device["id"], {"serial": "B"}, etag=etag)  # the tag is stale now
    assert stale.value.status == 412
    with pytest.raises(NetBoxError, match="item 1: type") as bulk:
        nb.bulk_create(
            "dcim/interfaces",
            [
                {"device": device["id"], "name": "x1", "type": "virtual"},
                {"device": device["id"], "name": "x2", "type": "nope"},
            ],
        )
    assert bulk.value.status == 400
    assert not nb.fetch_all(
        "dcim/interfaces", {"device_id": device["id"], "name": "x1"}
    )  # bulk is all or nothing
    with pytest.raises(NetBoxError, match="cannot reach NetBox"):
        NetBoxClient(NetBoxConfig(url="http://127.0.0.1:9", token="x", timeout=2)).status()


def test_v1_tokens_work_too(netbox: NetBoxInstance) -> None:
    client = NetBoxClient(NetBoxConfig(url=netbox.url, token=netbox.token_v1))
    assert client.status()["netbox-version"].startswith("4.7")


def test_readyz_checks_netbox_when_configured(netbox: NetBoxInstance, settings: Any) -> None:
    from django.test import Client

    settings.REDIS_URL = ""
    settings.NETBOX_URL, settings.NETBOX_TOKEN = netbox.url, netbox.token_v2
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["netbox"]["detail"].startswith("NetBox 4.7")
    settings.NETBOX_URL, settings.NETBOX_TIMEOUT = "http://127.0.0.1:9", 2
    down = Client().get("/readyz")
    assert down.status_code == 503
    assert "cannot reach NetBox" in down.json()["checks"]["netbox"]["detail"]
    settings.NETBOX_URL = ""
    assert "netbox" not in Client().get("/readyz").json()["checks"]
