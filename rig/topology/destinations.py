"""Where the rig may send traffic: the one check before every socket send.

Allowed: loopback (127.0.0.0/8, ::1), which holds the rig's own services too (they run as
local processes, as containers on the host network or in the run's own network namespace,
and listen on the loopback address the run holds), and the networks the user allowed by
name (the scenario's `targets.allow`). Everything else, host names included (the rig
does no DNS lookups), is refused with the address and where it came from, before any
packet goes there. Pure: no sockets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from rig.errors import UnsafeTargetError, quote

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
ALLOW_KEY = "targets.allow"


class UnsafeDestination(UnsafeTargetError, ValueError):
    """A send to an address that is not loopback, not the rig's own and not allowed."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`["10.0.0.5", "192.0.2.0/24"]` as networks; ValueError naming the first bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{quote(value)} is not an IP address or network") from None
    return tuple(networks)


@dataclass
class Destinations:
    """The guard: `check(host, port, origin)` returns the address or raises UnsafeDestination.

    `allowed` are the networks the user allowed explicitly. Hosts already let through are
    remembered, so the check costs one dict lookup on a hot path.
    """

    allowed: tuple[IPNetwork, ...] = ()
    _passed: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    def check(self, host: str, port: int, origin: str) -> tuple[str, int]:
        if not self._passed.get(host):
            self._refuse_unless_allowed(host, port, origin)
            self._passed[host] = True
        return host, port

    def _refuse_unless_allowed(self, host: str, port: int, origin: str) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise UnsafeDestination(
                f"refusing to send to {quote(host, 60)}{port_part(port)} ({origin}): not an IP "
                "address (the rig does no DNS lookups)"
            ) from None
        if not self.allows(address):
            raise UnsafeDestination(
                f"refusing to send to {address}{port_part(port)} ({origin}): not loopback, "
                f"not the rig's own and not in {ALLOW_KEY}"
            )

    def allows(self, address: IPAddress) -> bool:
        return any(address in network for network in (*LOOPBACK, *self.allowed))


def port_part(port: int) -> str:
    return f":{port}" if port else ""


LOOPBACK_ONLY = Destinations()
