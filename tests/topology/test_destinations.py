"""The destination guard on plain values: what passes, what is refused, and how it says so."""

from __future__ import annotations

import pytest

from rig.errors import UsageError
from rig.topology.destinations import (
    LOOPBACK_ONLY,
    Destinations,
    UnsafeDestination,
    parse_networks,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.1.250", "127.255.255.254", "::1"])
def test_loopback_passes_and_comes_back_unchanged(host: str) -> None:
    assert LOOPBACK_ONLY.check(host, 5060, "the UAS") == (host, 5060)


@pytest.mark.parametrize("host", ["10.1.2.3", "203.0.113.7", "0.0.0.0", "128.0.0.1", "::2"])
def test_anything_else_is_refused_with_the_address_and_its_origin(host: str) -> None:
    with pytest.raises(UnsafeDestination) as caught:
        Destinations().check(host, 40000, "SDP c=/m= from the relay's answer")
    assert str(caught.value) == (
        f"refusing to send to {host}:40000 (SDP c=/m= from the relay's answer): not loopback, "
        "not the rig's own and not in targets.allow"
    )
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2


@pytest.mark.parametrize("host", ["localhost", "relay.example.com", "127.0.0.1.nip.io", ""])
def test_host_names_are_refused_even_when_everything_is_allowed(host: str) -> None:
    everything = Destinations(allowed=parse_networks(["0.0.0.0/0", "::/0"]))
    with pytest.raises(UnsafeDestination, match="not an IP address .the rig does no DNS"):
        everything.check(host, 5060, "SIP Record-Route of the 2xx to INVITE")


def test_allowed_networks_let_their_addresses_through_and_no_others() -> None:
    guard = Destinations(allowed=parse_networks(["192.0.2.10", "198.51.100.0/24"]))
    assert guard.check("192.0.2.10", 5060, "the SIP proxy") == ("192.0.2.10", 5060)
    assert guard.check("198.51.100.77", 0, "the NG address") == ("198.51.100.77", 0)
    with pytest.raises(UnsafeDestination, match=r"192\.0\.2\.11:5060 \(the SIP proxy\)"):
        guard.check("192.0.2.11", 5060, "the SIP proxy")


def test_a_refused_address_stays_refused_and_a_passed_one_is_remembered() -> None:
    guard = Destinations()
    for _ in range(2):
        with pytest.raises(UnsafeDestination):
            guard.check("10.0.0.1", 1, "a burst's first packet")
    guard.check("127.0.0.9", 1, "a burst's first packet")
    assert guard._passed == {"127.0.0.9": True}


def test_a_hostile_host_is_quoted_short_and_on_one_line() -> None:
    with pytest.raises(UnsafeDestination) as caught:
        LOOPBACK_ONLY.check("x\n" * 500, 5060, "SIP Record-Route of the INVITE")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize("value", ["example.com", "10.0.0.0/33", "300.1.1.1", ""])
def test_parse_networks_names_the_bad_value(value: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or network"):
        parse_networks(["127.0.0.1", value])
