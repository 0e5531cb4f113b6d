"""Which Debian suite a service's image is built on, and which one this host runs.

Debian carries one rtpengine and one Kamailio line per suite (bookworm 10.5 / 5.6, trixie
12.5 / 6.0, sid 26.0 / 6.1), so the suite picks the version. The docker backend builds the
service's image on `rig-base:<suite>` (containers/base/make-base.sh, SUITE=<suite>); the
local target runs what this host has installed, which comes from the host's own suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

Suite = Literal["bookworm", "trixie", "sid"]
SUITES: tuple[str, ...] = get_args(Suite)
DEFAULT_SUITE: Suite = "bookworm"
OS_RELEASE = Path("/etc/os-release")
DEBIAN_VERSION = Path("/etc/debian_version")


def base_image(suite: str) -> str:
    """The rig's base image of `suite`, as make-base.sh tags it."""
    return f"rig-base:{suite}"


def make_base_hint(suite: str) -> str:
    return (f"SUITE={suite} containers/base/make-base.sh (or, with a registry, "
            f"rig images --suite {suite} --base debian:{suite}-slim)")


def parse_host_suite(os_release: str, debian_version: str) -> str | None:
    """The Debian suite of a host from /etc/os-release and /etc/debian_version; None when
    it is not Debian. sid's os-release names the next release (`forky`), its
    debian_version says `forky/sid`."""
    fields = dict(line.split("=", 1) for line in os_release.splitlines() if "=" in line)
    if fields.get("ID", "").strip('"') != "debian":
        return None
    if debian_version.strip().endswith("/sid"):
        return "sid"
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    return codename or None


def host_suite(os_release: Path = OS_RELEASE, debian_version: Path = DEBIAN_VERSION) -> str | None:
    def text(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    return parse_host_suite(text(os_release), text(debian_version))


def local_suite_problem(name: str, suite: str, host: str | None) -> str | None:
    """Why `services.<name>.suite: <suite>` cannot run on the local target of a host of
    suite `host`, in one line; None when it is the host's own."""
    if suite == host:
        return None
    runs = f"this host's {name}, from Debian {host}" if host else \
        f"the {name} installed on this host, which is not Debian"
    return (f"services.{name}.suite {suite}: the local target runs {runs} "
            f"(run {suite}'s with --target docker)")
