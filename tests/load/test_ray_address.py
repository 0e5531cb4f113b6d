"""The plain parts of rig/load/ray_driver.py: `--cluster` addresses, read before Ray is
imported, bursts moved onto the coordinator's clock, and the nodes' labels and counters
(no Ray needed here)."""


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


def test_nodes_are_labelled_in_order_of_first_appearance():
    from rig.load.ray_driver import node_labels

    assert node_labels(["bb", "aa", "bb", "cc", "aa"]) == {
        "bb": "node1", "aa": "node2", "cc": "node3"}
    assert node_labels([]) == {}


def test_generator_counters_sum_per_node_under_its_label():
    from rig.load.ray_driver import snapshots_by_node

    snapshots = [("bb", {"load.calls_active": 3.0, "load.rtp_sent": 10.0}),
                 ("aa", {"load.calls_active": 2.0}),
                 ("bb", {"load.calls_active": 1.0}),
                 ("cc", {})]  # an actor not polled yet
    assert snapshots_by_node(snapshots) == {
        "node1": {"load.calls_active": 4.0, "load.rtp_sent": 10.0},
        "node2": {"load.calls_active": 2.0},
        "node3": {}}


def test_a_ray_driver_labels_its_nodes_in_the_cluster_event_and_its_per_node_counters():
    from rig.load.driver import CallPlan, Targets
    from rig.load.ray_driver import RayDriver, _Generator
    from rig.load.shares import shares

    calls = CallPlan(cps=30.0, max_concurrent=10, hold=0.1, outcomes={"answered": 1.0},
                     no_answer_timeout=0.15, rtp=None)
    targets = Targets(host="127.0.0.1", uac_port=5060, uas_port=5080,
                      rtp_ports=(42000, 42999))
    parts = shares(calls, None, targets, seed=3, processes=3)
    driver = RayDriver(parts, lambda kind, data: None, address="local", run_id="labels-test")
    for share, node_id, active in zip(parts, ["bb", "aa", "bb"], [3.0, 2.0, 1.0], strict=True):
        driver.generators.append(_Generator(share, actor=None, node_id=node_id, ip="10.0.0.9",
                                            snapshot={"load.calls_active": active}))
    assert [(n["label"], n["node_id"], n["generators"]) for n in driver.nodes()] == [
        ("node1", "bb", [0, 2]), ("node2", "aa", [1])]
    assert driver.node_snapshots() == {"node1": {"load.calls_active": 4.0},
                                       "node2": {"load.calls_active": 2.0}}
    assert driver.snapshot() == {"load.calls_active": 6.0}
