"""What the rig's callee accepts in an SDP offer; anything else it answers 488.

Pure. A callee that answered a broken offer would leave the proxy and the media relay a
session no one can use (and, when the caller never ACKs, one nobody deletes); rejecting it
is what a real phone does, and it lets the proxy's failure path clean up.
"""

from __future__ import annotations

import ipaddress

MAX_MEDIA = 16  # media sections a callee takes in one offer


def _address_problem(line: str) -> str | None:
    parts = line[2:].split()
    if len(parts) != 3:
        return f"bad connection line {line!r}"
    try:
        ipaddress.ip_address(parts[2].split("/")[0])
    except ValueError:
        return f"connection address {parts[2]!r} is not an IP address"
    return None


def offer_problem(sdp: str) -> str | None:
    """Why the callee cannot use this offer, or None when it can."""
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    session_c: str | None = None
    sections: list[tuple[str, str | None]] = []  # (m= line, its own c= line)
    for line in lines:
        if line.startswith("m="):
            sections.append((line, None))
        elif line.startswith("c="):
            if sections:
                sections[-1] = (sections[-1][0], line)
            else:
                session_c = line
    if not sections:
        return "no media section"
    if len(sections) > MAX_MEDIA:
        return f"{len(sections)} media sections (at most {MAX_MEDIA})"
    live = 0
    for m_line, own_c in sections:
        fields = m_line[2:].split()
        if len(fields) < 3 or not fields[1].split("/")[0].isdigit():
            return f"bad media line {m_line!r}"
        if int(fields[1].split("/")[0]) == 0:
            continue
        live += 1
        connection = own_c or session_c
        if connection is None:
            return "a media section has no connection address"
        if (problem := _address_problem(connection)) is not None:
            return problem
    if live == 0:
        return "every media section is rejected (port 0)"
    return None
