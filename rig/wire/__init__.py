"""Wire formats and protocol state machines as pure code: SIP, SDP, RTP, the NG codec.

Nothing here opens a socket, starts a thread or touches asyncio; callers pass bytes and
the time in and get bytes, values and deadlines back, so every piece is tested on plain
values. The I/O around them lives in rig.load (generators) and rig.probes (one-shot
requests).
"""
