"""The plain parts of rig/load/ray_driver.py: `--cluster` addresses, read before Ray is
imported, and bursts moved onto the coordinator's clock (no Ray needed here)."""


import pytest

from rig.distribute_ray import check_reachable, host_port, loopback_address
from rig.errors import InfraError


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)),
    ("head.example:6380", ("head.example", 6380)),
    ("[::1]:6379", ("::1", 6379)),
    ("ray://head:10001", None),
    ("auto", None),
    ("head:port", None),
])
def test_host_and_port_of_a_gcs_address(address, expected):
    assert host_port(address) == expected


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:6379", True), ("127.9.3.1:1", True), ("[::1]:6379", True),
    ("localhost:6379", True), ("10.0.0.2:6379", False), ("ray://127.0.0.1:10001", False),
])
def test_loopback_addresses(address, loopback):
    assert loopback_address(address) is loopback


def test_nothing_listening_is_one_line():
    from rig.topology.loopback import block_host

    with pytest.raises(InfraError, match="no Ray cluster answers there"):
        check_reachable(f"{block_host('250.9')}:9")


def test_a_node_burst_moves_onto_the_coordinator_clock():
    import math

    from rig.load.bursts import BurstResult, Deadline
    from rig.load.ray_driver import onto_coordinator

    # node: monotonic 50 is wall 1000.0, its wall clock 0.2 s ahead of the coordinator's;
    # coordinator: wall = monotonic + 900
    node = BurstResult(index=3, deadline=Deadline(50.0, 1000.0),
                       send_times=(50.0001, 50.0004, math.nan))
    moved = onto_coordinator(node, offset_s=0.2, mono_to_wall=900.0)
    assert moved.deadline.realtime == pytest.approx(999.8)
    assert moved.deadline.monotonic == pytest.approx(99.8)  # 999.8 - 900
    assert moved.send_times[:2] == pytest.approx((99.8001, 99.8004))
    assert math.isnan(moved.send_times[2])
    assert moved.spread_us == pytest.approx(node.spread_us)
