"""rig/series.py's plain values: a `--cluster` run's per-node columns."""

from rig.series import node_column, node_columns


def test_a_node_column_names_the_counter_then_the_node():
    assert node_column("load.calls_active", "node2") == "load.calls_active@node2"


def test_node_columns_go_counter_by_counter_and_node_by_node():
    per_node = {"node1": {"load.calls_active": 3.0, "load.rtp_sent": 10.0},
                "node2": {"load.calls_active": 2.0, "load.calls_failed": 1.0}}
    assert list(node_columns(per_node).items()) == [
        ("load.calls_active@node1", 3.0), ("load.calls_active@node2", 2.0),
        ("load.rtp_sent@node1", 10.0), ("load.calls_failed@node2", 1.0)]


def test_a_node_that_has_reported_nothing_yet_has_no_columns():
    assert node_columns({"node1": {}, "node2": {"load.calls_active": 1.0}}) == {
        "load.calls_active@node2": 1.0}
    assert node_columns({}) == {}
