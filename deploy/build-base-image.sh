#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3.11, for Docker engines that cannot pull
# images. With a registry, skip this: the Dockerfile's default BASE_IMAGE is python:3.11-slim.
#
# usage: deploy/build-base-image.sh [image-tag]        (needs root and debootstrap)
set -euo pipefail
tag="${1:-${REPLICATION_BASE_IMAGE:-replication-base:bookworm}}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already exists"
    exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd bookworm "$rootfs" "$mirror"
# The same trimming the official slim images do: no apt lists, docs or caches in the layer.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/cache/*
ln -sf python3 "$rootfs/usr/bin/python"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag"
echo "built base image $tag"
