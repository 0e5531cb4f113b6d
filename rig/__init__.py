"""rig: reproducible load generation and regression tests for VoIP media relays."""

__version__ = "0.1.0"
