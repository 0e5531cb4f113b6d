"""The rig's SIP user agents over asyncio UDP: a UAC that places calls and a UAS that answers.

Both are callback state machines over one UDP socket each (no coroutine per call), with
every deadline in one timer heap: rig/load/uac.py and rig/load/uas.py. Retransmissions and
give-ups are the RFC 3261 transaction machines of rig.wire.transaction, bounded by
`SipTimers.timeout`, so every call ends. This module is where the rest of the rig imports
them from.
"""

from __future__ import annotations

from rig.load.callspec import (
    EXPECTED_FINAL,
    REFUSED,
    VANISH_NOTICE_S,
    CallResult,
    CallSpec,
    OfferRefused,
    UasCounts,
)
from rig.load.sipio import Endpoint, open_endpoint
from rig.load.uac import AnsweredHook, DoneHook, Uac
from rig.load.uas import EndHook, OfferHook, Uas

__all__ = [
    "EXPECTED_FINAL", "REFUSED", "VANISH_NOTICE_S", "AnsweredHook", "CallResult", "CallSpec",
    "DoneHook", "EndHook", "Endpoint", "OfferHook", "OfferRefused", "Uac", "Uas", "UasCounts",
    "open_endpoint",
]
