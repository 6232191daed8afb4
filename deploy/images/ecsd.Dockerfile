# The ecsd image: FROM scratch, the binary and the shared libraries it links (staged by
# deploy/build-images.sh), run as an unprivileged user. No shell, no package manager.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 empty/ /var/lib/ecsd/
USER 65532:65532
VOLUME /var/lib/ecsd
EXPOSE 8101 8201
ENTRYPOINT ["/usr/local/bin/ecsd"]
CMD ["serve", "--config", "/etc/ecsd/node.toml"]
