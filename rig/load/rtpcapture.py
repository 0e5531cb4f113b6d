"""A user's capture read for `load.rtp.pcap`: the UDP payloads of any link type, by scapy.

The pure part (which packets form the stream, how it loops) is rig.wire.rtpplay; this
module only reads the file. Problems are one UsageError line naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from rig.errors import UsageError
from rig.wire.rtpplay import MAX_PACKETS, Recording, recording_from

MAX_FRAMES = 10 * MAX_PACKETS  # frames read at most, RTP of other streams included
# pcap (both byte orders, µs and ns) and pcapng; checked first, since scapy's reader
# leaves the file open when it refuses one
MAGICS = {bytes.fromhex(m) for m in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1",
                                     "0a0d0d0a")}


def udp_payloads(path: Path) -> Iterator[tuple[float, bytes]]:
    from scapy.layers.inet import UDP
    from scapy.utils import PcapReader

    logging.getLogger("scapy").setLevel(logging.ERROR)
    with PcapReader(str(path)) as reader:
        for count, packet in enumerate(reader):
            if count >= MAX_FRAMES:
                return
            if packet.haslayer(UDP):
                yield float(packet.time), bytes(packet[UDP].payload)


def load_recording(path: Path) -> Recording:
    """The first RTP stream of the capture at `path`."""
    if not path.is_file():
        raise UsageError(f"load.rtp.pcap: {path}: no such file")
    with path.open("rb") as f:
        if f.read(4) not in MAGICS:
            raise UsageError(f"load.rtp.pcap: {path}: not a readable capture "
                             "(no pcap or pcapng header)")
    try:
        return recording_from(udp_payloads(path))
    except ValueError as exc:  # no RTP in it
        raise UsageError(f"load.rtp.pcap: {path}: {exc}") from None
    except Exception as exc:  # scapy: not a pcap, truncated, ...
        raise UsageError(f"load.rtp.pcap: {path}: not a readable capture ({exc})") from None
