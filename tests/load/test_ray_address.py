"""How `--cluster` addresses are read before Ray is imported (no Ray needed here)."""


import pytest

from rig.errors import InfraError
from rig.load.ray_driver import _check_reachable, _host_port, _loopback_host


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)),
    ("head.example:6380", ("head.example", 6380)),
    ("[::1]:6379", ("::1", 6379)),
    ("ray://head:10001", None),
    ("auto", None),
    ("head:port", None),
])
def test_host_and_port_of_a_gcs_address(address, expected):
    assert _host_port(address) == expected


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:6379", True), ("127.9.3.1:1", True), ("[::1]:6379", True),
    ("localhost:6379", True), ("10.0.0.2:6379", False), ("ray://127.0.0.1:10001", False),
])
def test_loopback_addresses(address, loopback):
    assert _loopback_host(address) is loopback


def test_nothing_listening_is_one_line():
    from rig.topology.loopback import block_host

    with pytest.raises(InfraError, match="no Ray cluster answers there"):
        _check_reachable(f"{block_host('250.9')}:9")
