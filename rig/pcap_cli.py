"""`rig pcap RUN [--call CALL-ID] [--out FILE]`: the calls of a run's capture, one call's
ladder, or one call's SIP, NG and RTP extracted into a pcap of its own."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rig.errors import UsageError, quote


def add_parsers(sub: Any) -> None:
    pcap = sub.add_parser("pcap", help="calls of a run's capture.pcap; one call's SIP and RTP")
    pcap.add_argument("run", type=Path, help="a run folder (or a capture file)")
    pcap.add_argument("--call", metavar="CALL-ID", help="this call's ladder (or, with --out, "
                                                        "its packets)")
    pcap.add_argument("--out", type=Path, metavar="FILE",
                      help="write the call's SIP, NG and RTP to this pcap")


def capture_path(run: Path) -> Path:
    path = run / "capture.pcap" if run.is_dir() else run
    if not path.is_file():
        raise UsageError(f"no capture: {path} (was the run made with `capture: off`?)")
    return path


def cmd_pcap(args: argparse.Namespace) -> int:
    from rig.pcapcalls import call_frames, collect_calls, ladder_text, read_datagrams, write_frames

    path = capture_path(args.run)
    if args.out is not None and args.call is None:
        raise UsageError("--out needs --call CALL-ID")
    datagrams = list(read_datagrams(path))
    calls = collect_calls(datagrams)
    if args.call is None:
        print(f"{len(calls)} calls in {path}")
        for call in sorted(calls.values(), key=lambda c: c.sip[0][0].t):
            print(f"  {call.call_id}  {call.outcome}  {len(call.sip)} SIP, {len(call.ng)} NG")
        return 0
    if args.call not in calls:
        raise UsageError(f"call {quote(args.call)} is not in {path} ({len(calls)} calls; "
                         "`rig pcap RUN` lists them)")
    call = calls[args.call]
    if args.out is None:
        print(ladder_text(call))
        return 0
    count = write_frames(args.out, call_frames(datagrams, call))
    print(f"{count} packets of call {args.call} written to {args.out}")
    return 0


COMMANDS = {"pcap": cmd_pcap}
