"""What a call is asked to do and how it ended: the values the UAC, UAS and driver share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EXPECTED_FINAL = {"answered": 200, "busy": 486, "cancel": 487, "no_answer": 487, "vanish": 200}
# vanish: the callee notices the silent caller this long after the caller went (RTP timeout)
VANISH_NOTICE_S = 1.0
REFUSED = "refused"  # the outcome of an INVITE answered 488 for its offer


class OfferRefused(ValueError):
    """Raised by an offer hook: the callee cannot use this offer (the UAS answers 488)."""


@dataclass(frozen=True)
class CallSpec:
    """One call the UAC places: the outcome to ask for and its timings."""

    outcome: str = "answered"
    hold: float = 0.0
    hangup: str = "uac"  # "uas": the UAS sends BYE after `hold`
    no_answer_timeout: float = 2.0  # no_answer: CANCEL after this long without an answer
    cancel_after: float = 0.0  # cancel: CANCEL this long after the first provisional


@dataclass(frozen=True)
class CallResult:
    call_id: str
    outcome: str
    completed: bool
    reason: str = ""  # why a call failed
    status: int = 0  # final response to the INVITE, 0 if none came
    invite_rtt: float = math.nan  # seconds from the INVITE to its final response
    bye_rtt: float = math.nan  # seconds from our BYE to its 2xx, if we sent one


@dataclass
class UasCounts:
    invites: int = 0
    completed: int = 0
    failed: int = 0
    refused: int = 0  # INVITEs whose offer the callee cannot use (488), e.g. hostile ones
    outcomes: dict[str, int] = field(default_factory=dict)
