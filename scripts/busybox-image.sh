#!/usr/bin/env bash
# Builds the local image `ecsd-busybox:latest` (no registry needed): Debian's static busybox in
# an otherwise empty root filesystem, imported with `docker import`. Used by the docker-runtime
# tests and handy for trying ecsd dev. Does nothing if the image already exists.
set -euo pipefail
IMAGE=${1:-ecsd-busybox:latest}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download busybox-static >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null && apt-get download busybox-static >/dev/null
}
dpkg-deb -x busybox-static_*.deb pkg
mkdir -p rootfs/bin rootfs/tmp rootfs/www
cp pkg/bin/busybox rootfs/bin/busybox
for applet in $(rootfs/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "rootfs/bin/$applet"
done
echo "hello from ecsd-busybox" > rootfs/www/index.html
tar -C rootfs -c . | docker import -c 'ENV PATH=/bin' -c 'WORKDIR /' - "$IMAGE" >/dev/null
echo "built $IMAGE"
