"""Approved changes are applied by ``manage.py worker`` processes: at once, once, and crash-safe.

Real parts only: the suite's NetBox, PostgreSQL, and workers started as child processes on the
test database. A worker is killed with SIGKILL at the executor's test-only pause point (after a
journal step is written) and another worker settles the change from the journal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from netboxrw import services
from netboxrw.client import NetBoxClient
from netboxrw.models import ChangeJournalStep, ChangeRequest, ChangeState, JournalState
from tests.netboxrw.lab import Lab, device_change, engineer, make_lab, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lab(nb: NetBoxClient) -> Lab:
    return make_lab(nb)


def _step_written(change_id: int, seq: int) -> bool:
    return ChangeJournalStep.objects.filter(
        change_request_id=change_id, seq=seq, state=JournalState.WRITTEN
    ).exists()


def _state(change_id: int) -> str:
    return ChangeRequest.objects.get(pk=change_id).state


def test_approval_returns_at_once_and_a_worker_applies_it(
    nb: NetBoxClient, lab: Lab, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    alice, bob = engineer("alice", reviewer=True), engineer("bob", reviewer=True)
    change_id = device_change(lab, alice, f"ams-{lab.tag}-wrk001")
    started = time.perf_counter()
    approved = services.change_request_approve(change_id=change_id, reviewer=bob)
    assert time.perf_counter() - started < 1.0
    assert approved.state == ChangeState.APPROVED
    assert not nb.fetch_all("dcim/devices", {"name": f"ams-{lab.tag}-wrk001"})  # nothing yet
    start_worker("w1")
    wait_for(lambda: _state(change_id) == ChangeState.APPLIED, 60, "the worker to apply the change")
    change = ChangeRequest.objects.get(pk=change_id)
    assert change.progress_done == change.progress_total == 5
    assert [s.state for s in change.journal.all()] == [JournalState.WRITTEN] * 2  # device, 4 interfaces
    assert {s.worker for s in change.journal.all()} == {"w1"}
    [device] = nb.fetch_all("dcim/devices", {"name": f"ams-{lab.tag}-wrk001"})
    assert len(nb.fetch_all("dcim/interfaces", {"device_id": device["id"]})) == 4


def test_two_workers_never_apply_the_same_change(
    nb: NetBoxClient, lab: Lab, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    alice, bob = engineer("alice", reviewer=True), engineer("bob", reviewer=True)
    names = [f"ams-{lab.tag}-wrk1{i:02d}" for i in range(6)]
    ids = [device_change(lab, alice, name) for name in names]
    for change_id in ids:
        services.change_request_approve(change_id=change_id, reviewer=bob)
    start_worker("w1")
    start_worker("w2")
    wait_for(
        lambda: all(_state(i) == ChangeState.APPLIED for i in ids), 120, "both workers to apply all changes"
    )
    for change_id, name in zip(ids, names, strict=True):
        change = ChangeRequest.objects.get(pk=change_id)
        assert change.events.filter(to_state="applying").count() == 1
        assert len({s.worker for s in change.journal.all()}) == 1
        assert len(nb.fetch_all("dcim/devices", {"name": name})) == 1


def test_a_worker_killed_mid_apply_is_rolled_back_by_another(
    nb: NetBoxClient, lab: Lab, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    alice, bob = engineer("alice", reviewer=True), engineer("bob", reviewer=True)
    name = f"ams-{lab.tag}-wrk200"
    change_id = device_change(lab, alice, name)
    services.change_request_approve(change_id=change_id, reviewer=bob)
    doomed = start_worker("doomed", NETOPS_TEST_PAUSE_AFTER_STEP="0")
    wait_for(
        lambda: _step_written(change_id, 0),
        60,
        "the first step to be written",
    )
    assert len(nb.fetch_all("dcim/devices", {"name": name})) == 1  # half-written: device, no interfaces
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    killed_at = time.monotonic()

    # NetBox unreachable for the first recovering worker: it waits and says so; nothing is lost.
    cut_off = start_worker("cut-off", NETBOX_URL="http://127.0.0.1:9", NETBOX_TIMEOUT="1")
    waiting = wait_for(
        lambda: ChangeRequest.objects.filter(pk=change_id, recovery_attempts__gte=1).first(),
        60,
        "a recovery attempt while NetBox is unreachable",
    )
    assert waiting.state == ChangeState.APPLYING
    assert "waits for NetBox" in waiting.error
    assert len(nb.fetch_all("dcim/devices", {"name": name})) == 1
    # NetBox is back: the workers that run from now on reach it. (Killed, not stopped: it may be in
    # the middle of a recovery attempt, which a graceful stop would wait for.)
    cut_off.kill()
    cut_off.wait(timeout=10)

    start_worker("rescuer")
    wait_for(lambda: _state(change_id) == ChangeState.FAILED, 90, "the rescuer to roll the change back")
    settled = time.monotonic() - killed_at
    change = ChangeRequest.objects.get(pk=change_id)
    assert change.error.startswith("interrupted by a worker crash (doomed), rolled back")
    assert f"deleted {name}" in change.error
    assert not nb.fetch_all("dcim/devices", {"name": name})  # none of its objects are left
    assert change.events.last().to_state == ChangeState.FAILED
    assert all(s.state == JournalState.UNDONE for s in change.journal.all())
    print(f"worker killed -> change settled (with a NetBox outage first): {settled:.1f} s")


def test_a_worker_killed_after_its_last_write_leaves_the_change_applied(
    nb: NetBoxClient, lab: Lab, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    alice, bob = engineer("alice", reviewer=True), engineer("bob", reviewer=True)
    name = f"ams-{lab.tag}-wrk300"
    change_id = device_change(lab, alice, name)
    services.change_request_approve(change_id=change_id, reviewer=bob)
    doomed = start_worker("doomed", NETOPS_TEST_PAUSE_AFTER_STEP="1")  # step 1: the interfaces, the last
    wait_for(
        lambda: _step_written(change_id, 1),
        60,
        "the last step to be written",
    )
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    start_worker("rescuer")
    wait_for(lambda: _state(change_id) == ChangeState.APPLIED, 60, "the rescuer to record the outcome")
    change = ChangeRequest.objects.get(pk=change_id)
    assert change.result["message"] == "applied; outcome recorded after a worker crash"
    assert len(change.result["objects"]) == 5
    [device] = nb.fetch_all("dcim/devices", {"name": name})
    assert len(nb.fetch_all("dcim/interfaces", {"device_id": device["id"]})) == 4
