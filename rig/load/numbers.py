"""The summary's load block, from the driver's report or, after a crash, its counters."""

from __future__ import annotations

from typing import Any

from rig.wire.rtpstats import RtpStats


def rtp_numbers(rtp: RtpStats) -> dict[str, Any]:
    """The RTP counters the summary has beyond sent, received, lost and the worst jitter."""
    return {
        "rtp_streams": rtp.streams,
        "rtp_expected": rtp.expected,
        "rtp_duplicates": rtp.duplicates,
        "rtp_reordered": rtp.reordered,
        "rtp_send_errors": rtp.send_errors,
        "rtp_invalid": rtp.invalid,
        "rtp_loss_fraction": rtp.loss_fraction,
        "jitter_ms_mean": rtp.jitter_ms_mean,
    }


def load_numbers(report: Any, snapshot: dict[str, float], seconds: float) -> dict[str, Any]:
    if report is not None:
        return {
            "calls_attempted": report.calls_attempted,
            "calls_completed": report.calls_completed,
            "calls_failed": report.calls_failed,
            "outcomes": dict(report.outcomes),
            "cps": round(report.cps_achieved, 2),
            "rtp_sent": report.rtp_sent,
            "rtp_received": report.rtp_received,
            "rtp_lost": report.rtp_lost,
            "jitter_ms_max": report.jitter_ms_max,
            **rtp_numbers(report.rtp),
            "bursts": list(report.bursts),
            "latency": {name: h.summary_ms() for name, h in sorted(report.latency.items())},
        }
    completed = snapshot.get("load.calls_completed", 0.0)
    failed = snapshot.get("load.calls_failed", 0.0)
    active = snapshot.get("load.calls_active", 0.0)
    return {
        "calls_attempted": int(completed + failed + active),
        "calls_completed": int(completed),
        "calls_failed": int(failed),
        "outcomes": {},
        "cps": round((completed + failed) / seconds, 2) if seconds > 0 else 0.0,
        "rtp_sent": int(snapshot.get("load.rtp_sent", 0)),
        "rtp_received": int(snapshot.get("load.rtp_received", 0)),
        "rtp_lost": None,
        "jitter_ms_max": None,
        "bursts": [],
        "interrupted_by_crash": True,
    }
