# The ecs-agent image: FROM scratch, the binary and the shared libraries it links (staged by
# deploy/build-images.sh). It runs tasks through the host's Docker Engine (mount
# /var/run/docker.sock), as the ECS agent does, so it runs as root.
FROM scratch
COPY rootfs/ /
VOLUME /var/lib/ecs-agent
ENTRYPOINT ["/usr/local/bin/ecs-agent"]
