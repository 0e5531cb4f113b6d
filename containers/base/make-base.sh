#!/usr/bin/env bash
# Make the base image every rig Dockerfile builds on (ARG BASE=rig-base:bookworm).
#
# With a registry you do not need this: build with --build-arg BASE=debian:bookworm-slim.
# Without one, a minimal Debian bookworm tree comes from the configured Debian mirror
# (debootstrap) and is imported as an image. Idempotent: does nothing when the image exists.
#
# Usage: make-base.sh [TAG]            (default rig-base:$SUITE)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              SUITE (bookworm, trixie or sid; default bookworm)
set -euo pipefail

suite="${SUITE:-bookworm}"
tag="${1:-rig-base:$suite}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "make-base: $tag exists, nothing to do"
    exit 0
fi
for tool in debootstrap docker tar; do
    command -v "$tool" >/dev/null || { echo "make-base: $tool is not installed" >&2; exit 3; }
done

root="$(mktemp -d "${TMPDIR:-/tmp}/rig-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT

echo "make-base: debootstrap $suite from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 3; }
rm -f "$root.log"

if [ "$suite" = sid ] || [ "$suite" = unstable ]; then
    # sid has no -updates or -security suite, and the mirror's Release file for it can be
    # past its Valid-Until date, which apt would otherwise refuse.
    echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
    echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/01-rig-sid-valid-until"
else
    # apt inside image builds should see the point releases and security updates too.
    security="${mirror%/debian}/debian-security"
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES
fi
# Small images: no docs, no man pages, no recommends, no apt caches.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-rig-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
NODOC
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$root/etc/apt/apt.conf.d/01-rig-norecommends"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/*

echo "make-base: importing as $tag"
tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    - "$tag" >/dev/null
echo "make-base: $tag ready"
