"""Load generation: SIP UAC/UAS, SDP, RTP streams, the NG client, call mix and burst timers."""
