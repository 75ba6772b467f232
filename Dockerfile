# walsync in a scratch image: the static binary built by scripts/release.sh
# and a CA bundle, nothing else (no libc, no shell).
#
#   scripts/release.sh
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 -t walsync .
#   docker run -v /var/lib/app:/data walsync watch /data/app.db -b s3://bucket/app
#
# The binary is picked by the target platform: dist/walsync-linux-amd64,
# -arm64, -armv7 (TARGETARCH arm + TARGETVARIANT v7). The CA bundle is the
# build machine's (Debian's ca-certificates, copied by release.sh) at the
# path Go's crypto/x509 reads; AWS_CA_BUNDLE adds roots for a private CA.
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
COPY dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY dist/walsync-linux-${TARGETARCH}${TARGETVARIANT} /walsync
# walsync's spill files need a temp directory; WORKDIR creates /tmp.
WORKDIR /tmp
ENTRYPOINT ["/walsync"]
