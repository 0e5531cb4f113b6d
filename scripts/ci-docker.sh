#!/usr/bin/env bash
# CI for the docker tests: install an engine and debootstrap, start the engine when none
# answers, make the base image. Idempotent; the engine is left running for `pytest -m docker`.
# No registry needed: the base image comes from the Debian mirror (containers/base).
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log="${TMPDIR:-/tmp}/rig-dockerd.log"
    # No bridge and no iptables: every rig container uses the host network.
    nohup dockerd --bridge=none --iptables=false >"$log" 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -20 "$log" >&2; echo "dockerd did not start" >&2; exit 3; }
fi

containers/base/make-base.sh
# tests/docker/test_suites_docker.py runs trixie's and sid's rtpengine and Kamailio
SUITE=trixie containers/base/make-base.sh
SUITE=sid containers/base/make-base.sh
