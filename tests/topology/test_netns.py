"""The run's network namespace: made with loopback and a ruleset, entered and left, always
deleted, and deleted by gc after a killed run. The real ones need root, ip and nft."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rig.errors import InfraError
from rig.topology import netns
from rig.topology.runtime import RunRecord, collect_garbage

TRACKING = """table inet rig_test {
    chain out {
        type filter hook output priority filter; policy accept;
        ct state new counter
    }
}
"""

needs_netns = pytest.mark.skipif(netns.missing_capability() is not None,
                                 reason=f"{netns.missing_capability()}")


def test_names_carry_the_run_id_and_fit():
    assert netns.namespace_name("20261202-101010-ab12") == "rig-20261202-101010-ab12"
    assert netns.namespace_name("a b/c") == "rig-a-b-c"
    assert len(netns.namespace_name("x" * 200)) == netns.MAX_NAME


def test_defines_come_before_the_ruleset():
    text = netns.ruleset_text("table inet t {}\n", {"RTP_PORTS": "30000-30999"})
    assert text == "define RTP_PORTS = 30000-30999\ntable inet t {}\n"


def test_the_ruleset_gets_the_runs_port_ranges():
    assert netns.port_defines((30000, 31999), 2223, (40000, 49999)) == {
        "RELAY_RTP": "30000-31999", "NG_PORT": "2223", "RIG_RTP": "40000-49999"}


def test_the_notrack_patch_applies_to_the_shipped_ruleset(tmp_path):
    from rig.topology.source import apply_patches, copy_file

    repo = Path(__file__).resolve().parents[2]
    ruleset = copy_file(repo, "containers/relay/conntrack.nft", tmp_path)
    stock = ruleset.read_text()
    assert "ct state established,related accept" in stock and "notrack" not in stock
    apply_patches(tmp_path, [repo / "scenarios" / "patches" / "notrack-rtp.patch"])
    patched = ruleset.read_text()
    assert patched.count("udp dport $RELAY_RTP notrack") == 2  # prerouting and output
    assert patched.count("udp sport $RELAY_RTP notrack") == 2


@needs_netns
def test_the_shipped_rulesets_load(tmp_path):
    from rig.topology.source import apply_patches, copy_file

    repo = Path(__file__).resolve().parents[2]
    ruleset = copy_file(repo, "containers/relay/conntrack.nft", tmp_path)
    defines = netns.port_defines((30000, 31999), 2223, (40000, 49999))
    for patches in ([], [repo / "scenarios" / "patches" / "notrack-rtp.patch"]):
        apply_patches(tmp_path, patches)
        name = netns.namespace_name(f"test13-rules-{os.getpid()}")
        with netns.run_namespace(name, netns.NetnsPlan(
                netns.ruleset_text(ruleset.read_text(), defines), udp_timeout=5)):
            listed = subprocess.run(["nft", "list", "ruleset"], capture_output=True,
                                    text=True, check=True).stdout
        assert "table inet rig_media" in listed
        assert ("notrack" in listed) == bool(patches)
        assert not netns.exists(name)


def test_without_root_the_namespace_is_one_infra_line(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(InfraError, match=r"^network namespace for the run: needs root"):
        with netns.run_namespace("rig-none", netns.NetnsPlan(TRACKING)):
            pass


def conntrack_count() -> int:
    return int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())


@needs_netns
def test_inside_the_namespace_traffic_is_tracked_and_it_is_gone_after(tmp_path):
    name = netns.namespace_name(f"test13-{os.getpid()}")
    outside = conntrack_count()
    with netns.run_namespace(name, netns.NetnsPlan(TRACKING, udp_timeout=7)):
        assert netns.exists(name)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for port in range(20000, 20012):
                sock.sendto(b"x", ("127.0.0.1", port))
        assert conntrack_count() >= 12
        timeout = Path("/proc/sys/net/netfilter/nf_conntrack_udp_timeout").read_text()
        assert timeout.strip() == "7"
    assert not netns.exists(name)
    assert conntrack_count() <= outside + 2, "back in the rig's own namespace"


@needs_netns
def test_a_bad_ruleset_is_an_infra_error_and_leaves_nothing():
    name = netns.namespace_name(f"test13-bad-{os.getpid()}")
    with pytest.raises(InfraError, match="nft"):
        with netns.run_namespace(name, netns.NetnsPlan("table nope {\n")):
            pass
    assert not netns.exists(name)


KILLED_RUN = """
import sys, time
from rig.topology import netns
from rig.topology.runtime import RunRecord
record = RunRecord.for_this_process(sys.argv[1])
name = netns.namespace_name(sys.argv[1])
record.add_namespace(name)
netns.create(name, netns.NetnsPlan(sys.argv[2]))
print("up", flush=True)
time.sleep(60)
"""


@needs_netns
def test_gc_deletes_the_namespace_of_a_killed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path / "runtime"))
    run_id = f"test13-gc-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, run_id, TRACKING],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "RIG_RUNTIME_DIR": str(tmp_path / "runtime")})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        name = netns.namespace_name(run_id)
        assert netns.exists(name)
        assert collect_garbage().namespaces == 0, "its run is alive"
        child.kill()
        child.wait()
        report = collect_garbage()
        assert report.namespaces == 1 and run_id in report.runs
        assert not netns.exists(name)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
        netns.delete(netns.namespace_name(run_id))


def test_the_record_lists_namespaces(tmp_path, monkeypatch):
    monkeypatch.setenv("RIG_RUNTIME_DIR", str(tmp_path))
    record = RunRecord.for_this_process("rec13")
    record.add_namespace("rig-rec13")
    assert json.loads(record.path.read_text())["namespaces"] == ["rig-rec13"]
    record.remove()
