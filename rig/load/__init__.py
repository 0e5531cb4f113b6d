"""Load generation, the I/O side: SIP UAC/UAS, RTP streams, the NG client, call mix, bursts.

The formats they speak (SIP, SDP, RTP, NG) are pure code in rig.wire.
"""
