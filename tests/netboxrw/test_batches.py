"""How plans are cut into bulk requests: dependency breaks, and sizes that follow measured cost."""

from __future__ import annotations

from netboxrw.executor import BULK, FIRST_BULK, MIN_BULK, BatchSizer, batches
from netboxrw.plans import Operation, create_op


def _creates(endpoint: str, n: int) -> list[Operation]:
    return [create_op(endpoint, f"{endpoint} {i}", {"name": str(i)}, ref=f"{endpoint}:{i}") for i in range(n)]


def test_a_create_pointing_into_the_batch_being_built_starts_a_new_one() -> None:
    parent = create_op("dcim/regions", "NAM", {"slug": "nam"}, ref="region:NAM")
    child = create_op("dcim/regions", "US", {"slug": "us", "parent": {"$ref": "region:NAM"}}, ref="region:US")
    sibling = create_op("dcim/regions", "EMEA", {"slug": "emea"}, ref="region:EMEA")
    assert [[op.display for op in b] for b in batches([parent, sibling, child])] == [["NAM", "EMEA"], ["US"]]
    assert len(batches(_creates("dcim/sites", 1200))) == 3  # at most BULK per request


def test_request_sizes_follow_the_measured_time_per_object_per_type() -> None:
    sizer = BatchSizer()
    assert sizer.size("dcim/cables") == FIRST_BULK
    sizer.observe("dcim/cables", 100, 12.5)  # 8 cables/s: 20 s is 160 cables
    sizer.observe("dcim/interfaces", 100, 2.0)  # 50/s would be 1000: capped
    sizer.observe("dcim/devices", 100, 400.0)  # pathological: never below the floor
    assert (sizer.size("dcim/cables"), sizer.size("dcim/interfaces"), sizer.size("dcim/devices")) == (
        160,
        BULK,
        MIN_BULK,
    )


def test_the_sizer_yields_every_operation_once_in_order_in_sized_batches() -> None:
    sizer = BatchSizer()
    sizer.sizes["dcim/cables"] = 160
    operations = _creates("dcim/interfaces", 250) + _creates("dcim/cables", 400)
    got = list(sizer.batches(operations))
    assert [op for batch in got for op in batch] == operations
    # Each type starts at its known size (interfaces: the first-request size); nothing is sent here,
    # so every batch looks instant and the next one of its type grows to the cap.
    assert [(b[0].endpoint, len(b)) for b in got] == [
        ("dcim/interfaces", 100),
        ("dcim/interfaces", 150),
        ("dcim/cables", 160),
        ("dcim/cables", 240),
    ]
