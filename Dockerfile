# walsync in a scratch image: the static binary built by scripts/release.sh,
# a CA bundle and a /tmp, nothing else (no libc, no shell).
#
#   scripts/release.sh
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t walsync .
#   docker run -v /var/lib/app:/data walsync watch /data/app.db -b s3://bucket/app
#
# The binary is picked by the target platform: dist/walsync-linux-amd64,
# -arm64, -armv7 (TARGETARCH arm + TARGETVARIANT v7). dist/rootfs/ is made
# by release.sh with its modes set: tmp/ is 1777, as /tmp should be, so
# walsync's temp files (TMPDIR, default /tmp) work for any user (docker run
# --user 65534, Kubernetes runAsUser). A WORKDIR or a COPY of a directory
# would make /tmp root's 0755 and break exactly that; COPY keeps the modes
# of what is inside the copied directory. etc/ssl/certs/ca-certificates.crt
# is the build machine's CA bundle (release.sh fails without one), at the
# path Go's crypto/x509 reads; AWS_CA_BUNDLE adds roots for a private CA.
# No /etc/hosts: Docker and Kubernetes mount one; elsewhere use 127.0.0.1,
# not localhost (see README, "Building and platforms").
# scripts/cross-test.sh replays these COPY lines and runs the binary as
# user 65534 in the result.
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
COPY dist/rootfs/ /
COPY dist/walsync-linux-${TARGETARCH}${TARGETVARIANT} /walsync
ENTRYPOINT ["/walsync"]
