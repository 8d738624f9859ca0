"""The review queue: pages (list, filters, diff, review) and the REST API, with their permission rules."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from netboxrw import services
from netboxrw.models import ChangeRequest, ChangeState
from netboxrw.plans import Plan, create_op, update_op
from tests.netboxrw.lab import make_lab
from tests.support.netbox_server import NetBoxInstance
from tests.support.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db


def _user(name: str, *perms: str) -> User:
    user = User.objects.create_user(name, password="pw-for-tests-1")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="netboxrw", codename__in=perms)
    )
    return User.objects.get(pk=user.pk)


def _pending(requester: User, summary: str = "Create device ams-r1") -> ChangeRequest:
    plan = Plan(
        "netbox_create_device",
        summary,
        [
            create_op(
                "dcim/devices",
                "ams-r1",
                {"name": "ams-r1", "site": 1, "status": "active"},
                shown={"site": "AMS"},
            ),
            update_op(
                "dcim/sites",
                {"id": 1, "name": "AMS", "description": "old", "last_updated": "2026-01-01T00:00:00Z"},
                {"description": "new"},
                "AMS",
            ),
        ],
    )
    return services.change_request_create(
        plan=plan, arguments={"name": "ams-r1"}, requester=services.Requester(user=requester, via="test")
    )


def _api(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_queue_page_lists_with_counts_and_filters() -> None:
    alice = _user("alice", "view_changerequest")
    first = _pending(alice)
    other = _pending(_user("bob"), "Delete device old-r9")
    ChangeRequest.objects.filter(pk=other.pk).update(state=ChangeState.REJECTED)
    client = Client()
    client.force_login(alice)
    page = client.get("/changes/").content.decode()
    assert f"#{first.pk}" in page and f"#{other.pk}" in page
    assert "Pending review <strong>1</strong>" in page and "Rejected <strong>1</strong>" in page
    filtered = client.get(
        "/changes/?state=pending&requester=alice", headers={"HX-Request": "true"}
    ).content.decode()
    assert f"#{first.pk}" in filtered and f"#{other.pk}" not in filtered
    assert "<html" not in filtered  # the table fragment only
    assert f"#{first.pk}" in client.get("/changes/?object_type=dcim/sites").content.decode()


def test_detail_shows_a_side_by_side_diff_and_review_only_for_others() -> None:
    alice = _user("alice", "view_changerequest", "approve_changerequest")
    bob = _user("bob", "view_changerequest", "approve_changerequest")
    change = _pending(alice)
    client = Client()
    client.force_login(alice)
    page = client.get(f"/changes/{change.pk}/").content.decode()
    assert 'class="op op-create"' in page and 'class="op op-update"' in page
    assert '<td class="before">old</td>' in page and '<td class="after">new</td>' in page
    assert "AMS" in page  # the site is shown by name
    assert "Approve and apply" not in page
    assert "another engineer must review it" in page
    response = client.post(f"/changes/{change.pk}/approve/")
    assert response.status_code == 403
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING
    client.force_login(bob)
    assert "Approve and apply" in client.get(f"/changes/{change.pk}/").content.decode()
    rejected = client.post(
        f"/changes/{change.pk}/reject/", {"comment": "not in the window"}, headers={"HX-Request": "true"}
    )
    assert rejected.status_code == 200
    assert "Rejected" in rejected.content.decode() and "not in the window" in rejected.content.decode()


def test_a_large_change_shows_counts_per_type_and_the_first_operations_until_asked_for_all() -> None:
    alice = _user("alice", "view_changerequest")
    interfaces = [
        create_op("dcim/interfaces", f"r1 et-{n}", {"device": 1, "name": f"et-{n}"}) for n in range(250)
    ]
    plan = Plan(
        "seed_netbox",
        "seed_netbox: demo data for NAM",
        [
            create_op(
                "dcim/sites", "USC01", {"region": {"$ref": "region:US"}, "tags": [{"$ref": "tag:t"}, 7]}
            ),
            *interfaces,
        ],
    )
    change = services.change_request_create(
        plan=plan, arguments={}, requester=services.Requester(user=None, via="test")
    )
    client = Client()
    client.force_login(alice)
    page = client.get(f"/changes/{change.pk}/").content.decode()
    assert "(251 operations, applied in this order)" in page
    assert '<td class="after">region:US (new)</td>' in page  # created by this change, before the site
    assert '<td class="after">tag:t (new), 7</td>' in page  # lists read as text
    counts = page.split('class="diff op-counts"')[1].split("</table>")[0]
    assert counts.index("dcim/sites") < counts.index("dcim/interfaces")
    assert '<td class="num">250</td>' in counts and '<td class="num">1</td>' in counts
    assert page.count('class="op op-create"') == 200
    assert (
        "Showing the first 200 of 251 operations" in page and "r1 et-198" in page and "r1 et-199" not in page
    )
    everything = client.get(f"/changes/{change.pk}/?all=1").content.decode()
    assert everything.count('class="op op-create"') == 251 and "Showing the first" not in everything


def test_pages_need_login_and_show_everyone_else_only_their_own_requests() -> None:
    # Issue 12: a requester opens her own request without any permission; others' stay hidden.
    alice = _user("alice")
    change = _pending(alice)
    theirs = _pending(_user("carol"), "Create device par-r9")
    assert Client().get("/changes/").status_code == 302
    client = Client()
    client.force_login(alice)
    page = client.get("/changes/").content.decode()
    assert "Your change requests" in page and "ams-r1" in page and "par-r9" not in page
    assert "ws-connect" not in page  # the live signals name every change: reviewers only
    assert client.get(f"/changes/{change.pk}/").status_code == 200
    assert client.get(f"/changes/{theirs.pk}/").status_code == 404
    refused = client.post(f"/changes/{change.pk}/approve/", {"comment": "mine"})
    assert refused.status_code == 403 and ChangeRequest.objects.get(pk=change.pk).state == ChangeState.PENDING
    assert client.post(f"/changes/{theirs.pk}/approve/").status_code == 404
    nobody = Client()
    nobody.force_login(_user("nobody"))
    empty = nobody.get("/changes/").content.decode()
    assert "ams-r1" not in empty and "par-r9" not in empty


def test_the_approve_permission_alone_opens_the_queue_and_approves() -> None:
    change = _pending(_user("alice"))
    bob = _user("bob", "approve_changerequest")
    client = Client()
    client.force_login(bob)
    page = client.get("/changes/").content.decode()
    assert "NetBox change review" in page and "ams-r1" in page
    assert client.get(f"/changes/{change.pk}/").status_code == 200
    rejected = client.post(f"/changes/{change.pk}/reject/", {"comment": "not in this window"})
    assert rejected.status_code == 200
    assert ChangeRequest.objects.get(pk=change.pk).state == ChangeState.REJECTED
    other = _pending(_user("dave"), "Create device par-r9")
    api = _api(bob)
    assert api.get("/api/change-requests/").json()["count"] == 2
    assert (
        api.post(f"/api/change-requests/{other.pk}/reject/", {"comment": "no"}, format="json").status_code
        == 200
    )


def test_the_reviewer_group_from_the_migration_can_review() -> None:
    from django.contrib.auth.models import Group

    group = Group.objects.get(name="NetBox reviewers")
    assert set(group.permissions.values_list("codename", flat=True)) == {
        "view_changerequest",
        "approve_changerequest",
    }
    erin = User.objects.create_user("erin", password="pw-for-tests-1")
    erin.groups.add(group)
    change = _pending(_user("alice"))
    done = _api(erin).post(f"/api/change-requests/{change.pk}/reject/", {"comment": "no"}, format="json")
    assert done.status_code == 200 and done.json()["state"] == "rejected"


def test_api_list_detail_and_review_rules() -> None:
    alice = _user("alice", "view_changerequest", "approve_changerequest")
    viewer = _user("viewer", "view_changerequest")
    bob = _user("bob", "view_changerequest", "approve_changerequest")
    change = _pending(alice)

    listing = _api(viewer).get("/api/change-requests/?state=pending").json()
    assert listing["count"] == 1
    detail = _api(viewer).get(f"/api/change-requests/{change.pk}/").json()
    assert detail["state"] == "pending" and detail["requested_by"] == "alice"
    assert [d["action"] for d in detail["diff"]] == ["create", "update"]
    assert detail["events"][0]["to_state"] == "pending"

    assert _api(None).get("/api/change-requests/").status_code == 401
    # Without a permission: one's own requests only (read-only), none of others'.
    assert _api(_user("nobody")).get("/api/change-requests/").json()["count"] == 0
    assert _api(_user("nosy")).get(f"/api/change-requests/{change.pk}/").status_code == 404
    own_view = _api(_user("carol")).get("/api/change-requests/").json()
    assert own_view["count"] == 0
    own = _api(alice).post(f"/api/change-requests/{change.pk}/approve/", {"comment": "mine"}, format="json")
    assert own.status_code == 403 and "requester" in own.json()["error"]
    assert (
        _api(viewer).post(f"/api/change-requests/{change.pk}/approve/", {}, format="json").status_code == 403
    )
    assert (
        _api(bob)
        .post(f"/api/change-requests/{change.pk}/reject/", {"comment": "no"}, format="json")
        .status_code
        == 200
    )
    again = _api(bob).post(f"/api/change-requests/{change.pk}/approve/", {}, format="json")
    assert again.status_code == 409 and "rejected" in again.json()["error"]
    assert _api(bob).post(
        f"/api/change-requests/{change.pk}/approve/", {"comment": 5}, format="json"
    ).status_code in (400, 409)
    assert _api(bob).get("/api/change-requests/999999/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_api_approval_applies_through_the_executor(netbox: NetBoxInstance, settings: Any) -> None:
    settings.NETBOX_URL, settings.NETBOX_TOKEN = netbox.url, netbox.token_v2
    from netboxrw.config import netbox_client

    client = netbox_client()
    assert client is not None
    lab = make_lab(client)
    alice, bob = (
        _user("alice", "view_changerequest"),
        _user("bob", "view_changerequest", "approve_changerequest"),
    )
    plan = Plan(
        "netbox_ensure_vlan",
        "Ensure VLAN 300",
        [
            create_op(
                "ipam/vlans",
                "VLAN 300",
                {"vid": 300, "name": f"mgmt-{lab.tag}", "site": lab.site["id"]},
                lookup={"vid": 300, "site": lab.site["id"]},
            )
        ],
    )
    change = services.change_request_create(
        plan=plan, arguments={}, requester=services.Requester(user=alice, via="test")
    )
    response = _api(bob).post(f"/api/change-requests/{change.pk}/approve/", {"comment": "go"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "approved"  # recorded and queued; a worker applies it
    assert client.page("ipam/vlans", {"vid": 300, "site_id": lab.site["id"]}).count == 0
    assert run_queued_tasks() == 1
    assert _api(bob).get(f"/api/change-requests/{change.pk}/").json()["state"] == "applied"
    assert client.page("ipam/vlans", {"vid": 300, "site_id": lab.site["id"]}).count == 1


def test_expiry(settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    change = _pending(_user("alice"))
    ChangeRequest.objects.filter(pk=change.pk).update(created=timezone.now() - timedelta(hours=100))
    settings.CHANGE_REQUEST_TTL_HOURS = 72
    assert services.change_requests_expire() == 1
    change.refresh_from_db()
    assert change.state == ChangeState.EXPIRED
    assert change.events.last().actor_label == "system"
