"""LoadProbe: the load's counters, and with a cluster each counter per node as well."""

from rig.probes.media import LoadProbe

SNAPSHOT = {"load.calls_active": 5.0, "load.calls_completed": 9.0, "load.rtp_sent": 40.0}


def test_without_nodes_the_columns_are_the_driver_snapshot_and_nothing_more():
    assert LoadProbe(lambda: dict(SNAPSHOT)).read() == SNAPSHOT


def test_with_nodes_each_counter_is_summed_and_also_a_column_per_node():
    per_node = {"node1": {"load.calls_active": 3.0, "load.calls_completed": 4.0},
                "node2": {"load.calls_active": 2.0, "load.calls_completed": 5.0}}
    # the sums come from the same reading as the nodes, not from another snapshot
    probe = LoadProbe(lambda: {"load.calls_active": 99.0}, per_node=lambda: per_node)
    assert probe.read() == {
        "load.calls_active": 5.0, "load.calls_completed": 9.0,
        "load.calls_active@node1": 3.0, "load.calls_active@node2": 2.0,
        "load.calls_completed@node1": 4.0, "load.calls_completed@node2": 5.0}
    assert list(probe.read())[:2] == ["load.calls_active", "load.calls_completed"]
