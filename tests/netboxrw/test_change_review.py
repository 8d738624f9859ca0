"""The change-review workflow against a real NetBox: dry run, queue, approval, drift, rollback, revert."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection

from netboxrw import services
from netboxrw.client import NetBoxClient, NetBoxError
from netboxrw.models import ChangeRequest, ChangeState
from netops.errors import ApplicationError, ConflictError
from tests.netboxrw.lab import Lab, call_tool, changelog_count, make_lab
from tests.support.tasks import approve_and_apply, run_queued_tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lab(nb: NetBoxClient) -> Lab:
    return make_lab(nb)


def _user(name: str, *, reviewer: bool = False) -> User:
    user = User.objects.create_user(name, password="pw-for-tests-1")
    perms = ["view_changerequest"] + (["approve_changerequest"] if reviewer else [])
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="netboxrw", codename__in=perms)
    )
    return User.objects.get(pk=user.pk)


@pytest.fixture
def people() -> tuple[User, User]:
    return _user("alice", reviewer=True), _user("bob", reviewer=True)


def _device_args(
    lab: Lab, name: str, interfaces: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "device_type": lab.device_type["slug"],
        "role": lab.role["name"],  # by name: slugs and names both resolve
        "site": lab.site["slug"],
        "interfaces": interfaces
        or [{"name": "et-0/0/1", "type": "10gbase-x-sfpp"}, {"name": "et-0/0/2", "type": "10gbase-x-sfpp"}],
        **extra,
    }


def _devices(nb: NetBoxClient, name: str) -> list[dict[str, Any]]:
    return nb.fetch_all("dcim/devices", {"name": name})


def test_dry_run_shows_the_diff_and_writes_nothing(
    nb: NetBoxClient, lab: Lab, people: tuple[User, User]
) -> None:
    before = changelog_count(nb)
    result = call_tool("netbox_create_device", _device_args(lab, f"ams-{lab.tag}-cor001"), people[0])
    assert result["status"] == "dry_run"
    assert result["counts"] == {"create": 3}
    device = result["diff"][0]
    assert device["action"] == "create" and device["object_type"] == "dcim/devices"
    shown = {c["field"]: c["after"] for c in device["changes"]}
    assert shown["site"] == lab.site["name"] and shown["role"] == lab.role["name"]
    assert [d["object"] for d in result["diff"][1:]] == [
        f"ams-{lab.tag}-cor001 et-0/0/1",
        f"ams-{lab.tag}-cor001 et-0/0/2",
    ]
    assert changelog_count(nb) == before  # NetBox's changelog did not move
    assert not _devices(nb, f"ams-{lab.tag}-cor001")
    assert ChangeRequest.objects.count() == 0  # nothing stored either


def test_confirm_queues_and_approval_writes_exactly_the_plan(
    nb: NetBoxClient, lab: Lab, people: tuple[User, User]
) -> None:
    alice, bob = people
    name = f"ams-{lab.tag}-cor002"
    result = call_tool(
        "netbox_create_device", _device_args(lab, name, platform=lab.platform["slug"], confirm=True), alice
    )
    assert result["status"] == "pending_approval"
    change = ChangeRequest.objects.get(pk=result["change_request"])
    assert result["review_url"] == f"/changes/{change.pk}/"
    assert change.state == ChangeState.PENDING and change.requested_by == alice
    assert not _devices(nb, name)  # confirmed is not approved: nothing written yet

    change = approve_and_apply(change_id=change.pk, reviewer=bob, comment="ok for window 42")
    assert change.state == ChangeState.APPLIED, change.error
    [device] = _devices(nb, name)
    assert device["site"]["id"] == lab.site["id"] and device["platform"]["id"] == lab.platform["id"]
    assert device["status"]["value"] == "active"
    interfaces = nb.fetch_all("dcim/interfaces", {"device_id": device["id"]})
    assert sorted(i["name"] for i in interfaces) == ["et-0/0/1", "et-0/0/2"]
    assert {o["id"] for o in change.result["objects"]} == {device["id"], *(i["id"] for i in interfaces)}
    logged = nb.page(
        "core/object-changes",
        {"changed_object_id": device["id"], "changed_object_type": "dcim.device"},
        limit=5,
    ).results
    assert any(
        f"netops change request #{change.pk}" in (entry.get("message") or "") and "bob" in entry["message"]
        for entry in logged
    )
    assert [e.to_state for e in change.events.all()] == ["pending", "approved", "applying", "applied"]


def test_the_same_tool_twice_is_no_change(nb: NetBoxClient, lab: Lab, people: tuple[User, User]) -> None:
    alice, bob = people
    name = f"ams-{lab.tag}-cor003"
    change_id = call_tool("netbox_create_device", _device_args(lab, name, confirm=True), alice)[
        "change_request"
    ]
    approve_and_apply(change_id=change_id, reviewer=bob)
    again = call_tool("netbox_create_device", _device_args(lab, name, confirm=True), alice)
    assert again["status"] == "no_change"
    assert len(_devices(nb, name)) == 1
    vlan = {"vid": 100, "name": f"data-{lab.tag}", "site": lab.site["slug"], "confirm": True}
    approve_and_apply(change_id=call_tool("netbox_ensure_vlan", vlan, alice)["change_request"], reviewer=bob)
    assert call_tool("netbox_ensure_vlan", vlan, alice)["status"] == "no_change"


def test_an_object_edited_after_planning_is_a_conflict_and_nothing_is_written(
    nb: NetBoxClient, lab: Lab, people: tuple[User, User]
) -> None:
    alice, bob = people
    name = f"ams-{lab.tag}-cor004"
    approve_and_apply(
        change_id=call_tool("netbox_create_device", _device_args(lab, name, confirm=True), alice)[
            "change_request"
        ],
        reviewer=bob,
    )
    pending = call_tool(
        "netbox_update_device_status", {"device_name": name, "status": "offline", "confirm": True}, alice
    )
    [device] = _devices(nb, name)
    nb.update("dcim/devices", device["id"], {"serial": "EDITED-BY-HAND"})  # someone edits NetBox meanwhile

    change = approve_and_apply(change_id=pending["change_request"], reviewer=bob)
    assert change.state == ChangeState.CONFLICT
    assert "was edited in NetBox" in change.error
    [device] = _devices(nb, name)
    assert device["status"]["value"] == "active"  # the planned write did not happen
    assert device["serial"] == "EDITED-BY-HAND"


def test_a_failing_step_rolls_back_and_leaves_no_device(
    nb: NetBoxClient, lab: Lab, people: tuple[User, User]
) -> None:
    alice, bob = people
    name = f"ams-{lab.tag}-cor005"
    interfaces = [{"name": "et-0/0/1", "type": "10gbase-x-sfpp"}, {"name": "et-0/0/2", "type": "not-a-type"}]
    change_id = call_tool("netbox_create_device", _device_args(lab, name, interfaces, confirm=True), alice)[
        "change_request"
    ]
    change = approve_and_apply(change_id=change_id, reviewer=bob)
    assert change.state == ChangeState.FAILED
    assert "not-a-type" in change.error
    assert change.result["rolled_back"] == [f"deleted {name}"]
    assert not _devices(nb, name)


def test_the_requester_cannot_approve_and_reviewers_need_the_permission(
    lab: Lab, people: tuple[User, User]
) -> None:
    alice, _ = people
    outsider = _user("carol")
    change_id = call_tool(
        "netbox_create_device", _device_args(lab, f"ams-{lab.tag}-cor006", confirm=True), alice
    )["change_request"]
    with pytest.raises(services.ReviewForbidden, match="requester cannot review"):
        approve_and_apply(change_id=change_id, reviewer=alice)
    with pytest.raises(services.ReviewForbidden, match="permission"):
        approve_and_apply(change_id=change_id, reviewer=outsider)
    assert ChangeRequest.objects.get(pk=change_id).state == ChangeState.PENDING


def test_twenty_concurrent_approvals_apply_once(
    require_postgres: None, nb: NetBoxClient, lab: Lab, people: tuple[User, User]
) -> None:
    alice, _ = people
    reviewers = [_user(f"reviewer{i}", reviewer=True) for i in range(20)]
    name = f"ams-{lab.tag}-cor007"
    change_id = call_tool("netbox_create_device", _device_args(lab, name, confirm=True), alice)[
        "change_request"
    ]
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def approve(reviewer: User) -> None:
        try:
            barrier.wait()
            outcomes.append(services.change_request_approve(change_id=change_id, reviewer=reviewer).state)
        except ConflictError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(r,)) for r in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["approved"] + ["refused"] * 19
    assert run_queued_tasks() == 1  # queued once
    assert ChangeRequest.objects.get(pk=change_id).state == ChangeState.APPLIED
    assert len(_devices(nb, name)) == 1
    assert ChangeRequest.objects.get(pk=change_id).events.filter(to_state="applied").count() == 1


def test_revert_restores_the_previous_state(nb: NetBoxClient, lab: Lab, people: tuple[User, User]) -> None:
    alice, bob = people
    name = f"ams-{lab.tag}-cor008"
    approve_and_apply(
        change_id=call_tool("netbox_create_device", _device_args(lab, name, confirm=True), alice)[
            "change_request"
        ],
        reviewer=bob,
    )
    update = call_tool(
        "netbox_update_device_status", {"device_name": name, "status": "offline", "confirm": True}, alice
    )
    applied = approve_and_apply(change_id=update["change_request"], reviewer=bob)
    assert _devices(nb, name)[0]["status"]["value"] == "offline"

    revert = services.change_request_revert(
        change_id=applied.pk, requester=services.Requester(user=alice, via="queue")
    )
    assert revert.state == ChangeState.PENDING and revert.reverts_id == applied.pk
    assert revert.plan["operations"][0]["data"] == {"status": "active"}
    approve_and_apply(change_id=revert.pk, reviewer=bob)
    assert _devices(nb, name)[0]["status"]["value"] == "active"


def test_netbox_unreachable_is_a_clear_error_and_the_request_stays_pending(
    lab: Lab, people: tuple[User, User], settings: Any
) -> None:
    alice, bob = people
    change_id = call_tool(
        "netbox_create_device", _device_args(lab, f"ams-{lab.tag}-cor009", confirm=True), alice
    )["change_request"]
    settings.NETBOX_URL = "http://127.0.0.1:9"
    settings.NETBOX_TIMEOUT = 2
    with pytest.raises(NetBoxError, match=r"cannot reach NetBox at http://127\.0\.0\.1:9.*stays pending"):
        approve_and_apply(change_id=change_id, reviewer=bob)
    change = ChangeRequest.objects.get(pk=change_id)
    assert change.state == ChangeState.PENDING
    assert change.events.count() == 1


def test_no_tool_can_approve(lab: Lab) -> None:
    from registry.catalog import ToolCatalog

    names = [t.name for t in ToolCatalog.load(server_ids=[]).tools() if t.source == "netbox"]
    assert "netbox_create_device" in names
    assert not [n for n in names if "approve" in n or "apply_change" in n]


def test_rejected_requests_cannot_be_approved(lab: Lab, people: tuple[User, User]) -> None:
    alice, bob = people
    change_id = call_tool(
        "netbox_create_device", _device_args(lab, f"ams-{lab.tag}-cor010", confirm=True), alice
    )["change_request"]
    services.change_request_reject(change_id=change_id, reviewer=bob, comment="wrong site")
    with pytest.raises(ConflictError, match="is rejected"):
        approve_and_apply(change_id=change_id, reviewer=bob)
    with pytest.raises(ApplicationError):
        services.change_request_revert(change_id=change_id, requester=services.Requester(user=alice, via="t"))
