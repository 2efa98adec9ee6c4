#!/usr/bin/env bash
# Build the trialprep pipeline image with podman, without any registry:
#   1. a Debian bookworm base from Debian's archive (debootstrap --variant=minbase), imported
#      as localhost/debian-base:bookworm (once per machine);
#   2. containers/Containerfile on top: Python packages from the package index, pinned by
#      constraints.txt.
# The image is tagged localhost/trialprep:<version>-<12 hex of the SHA-256 of its sources and
# lock>, so any change means a new tag; an existing tag is reused (TRIALPREP_REBUILD=1 forces
# a build).
# Prints the tag on the last line. Needs root (debootstrap, rootful podman).
#
# Podman in unprivileged sandboxes needs runc, cgroupfs and no default ulimits: this script
# points CONTAINERS_CONF at containers/containers.conf unless it is already set.
set -euo pipefail
cd "$(dirname "$0")/.."

export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/containers/containers.conf}
BASE=localhost/debian-base:bookworm
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
# What goes into the image (the lock included): a change anywhere gives a new tag.
SOURCES=$(find pyproject.toml constraints.txt README.md Snakefile trialprep workflows \
    harmonization qc_reports rules config containers/Containerfile -type f \
    -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
TAG=localhost/trialprep:${VERSION}-${SOURCES}

log() { echo "build-containers: $*" >&2; }

if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v runc >/dev/null; then
    [ "$(id -u)" = 0 ] || { log "podman, runc and debootstrap are needed (root to install)"; exit 1; }
    log "installing Debian's podman, runc and debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q podman runc debootstrap >/dev/null
fi

if ! podman image exists "$BASE"; then
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources \
        2>/dev/null | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null
    rm -rf "$rootfs"
fi

if [ "${TRIALPREP_REBUILD:-0}" = 1 ] || ! podman image exists "$TAG"; then
    log "building $TAG"
    # pip inside the build trusts the host's CA bundle (mounted for the build only), so a
    # TLS-inspecting proxy that the host trusts works there too.
    ca=${TRIALPREP_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
    ca_args=()
    if [ -s "$ca" ]; then
        ca_args=(-v "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
    fi
    # PyTorch's CPU wheel, when this machine keeps one (TRIALPREP_WHEELS, default
    # /opt/wheels), is offered to pip inside the build (PyPI's torch pulls CUDA, GBs).
    wheels=${TRIALPREP_WHEELS:-/opt/wheels}
    wheel_args=()
    if compgen -G "$wheels/torch-*.whl" >/dev/null; then
        wheel_args=(-v "$wheels:/run/wheels:ro" --build-arg PIP_FIND_LINKS=/run/wheels)
    fi
    podman build --network=host -f containers/Containerfile --build-arg "BASE=$BASE" \
        --build-arg "IMAGE_TAG=$TAG" "${ca_args[@]}" "${wheel_args[@]}" -t "$TAG" . >&2
fi
log "image $TAG ($(podman image inspect --format '{{.Id}}' "$TAG" | cut -c1-19))"
echo "$TAG"
