#!/usr/bin/env bash
# Download the wheels on the host and build the code-location image from them.
#
# usage: deploy/build-image.sh [image-tag]
#   BASE_IMAGE   base to build on (default: a local bookworm image made by build-base-image.sh;
#                with a registry, BASE_IMAGE=python:3.11-slim works as is)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-${REPLICATION_IMAGE:-replication-code:latest}}"
base="${BASE_IMAGE:-replication-base:bookworm}"
python="${PYTHON:-python3}"

if [ "$base" = "replication-base:bookworm" ]; then
    deploy/build-base-image.sh "$base"
fi
mkdir -p deploy/wheels
# The host's Python must match the image's (3.11, x86_64 glibc): pip picks wheels for the host.
"$python" -m pip wheel --quiet --wheel-dir deploy/wheels .
docker build --quiet --build-arg BASE_IMAGE="$base" -f deploy/Dockerfile -t "$tag" .
echo "built $tag"
