"""One error hierarchy; the CLI maps each class to a documented exit code."""

from __future__ import annotations


class RigError(Exception):
    """Base of every error the rig raises on purpose."""

    exit_code = 3


class UsageError(RigError):
    """Bad input: a scenario, an argument, a patch that does not apply. Exit 2."""

    exit_code = 2


class ScenarioError(UsageError):
    """A scenario file that does not validate; the message names file and key path."""


class InfraError(RigError):
    """A service would not build or start, a port was taken, an engine is missing. Exit 3."""

    exit_code = 3

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


class UnsafeTargetError(UsageError):
    """Traffic would leave loopback and the rig's own containers."""
