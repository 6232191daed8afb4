#!/usr/bin/env bash
# Builds the images `ecsd:local` and `ecs-agent:local` from this checkout, with `docker build`
# and no registry: each is FROM scratch with the binary and the shared libraries `ldd` lists.
# Usage: deploy/build-images.sh [--debug]   (release binaries by default; CI uses --debug, its
# one build profile)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
profile=release
flags=(--release)
if [ "${1:-}" = --debug ]; then
  profile=debug
  flags=()
fi
cargo build --locked "${flags[@]}" -p ecsd -p ecs-agent
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# $1: the binary; $2: the image's root. The binary, every library it links, and /tmp.
stage() {
  mkdir -p "$2/usr/local/bin" "$2/tmp"
  chmod 1777 "$2/tmp"
  cp "$1" "$2/usr/local/bin/"
  for lib in $(ldd "$1" | grep -o '/[^ ]*'); do
    mkdir -p "$2$(dirname "$lib")"
    cp -L "$lib" "$2$lib"
  done
}
for image in ecsd ecs-agent; do
  context="$work/$image"
  mkdir -p "$context/empty"
  stage "$CARGO_TARGET_DIR/$profile/$image" "$context/rootfs"
  docker build -q -t "$image:local" -f "deploy/images/$image.Dockerfile" "$context" >/dev/null
  echo "built $image:local ($profile)"
done
