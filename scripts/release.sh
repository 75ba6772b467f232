#!/usr/bin/env bash
# release.sh builds walsync's static release binaries into dist/:
#
#   dist/walsync-linux-amd64   dist/walsync-linux-arm64   dist/walsync-linux-armv7
#   dist/SHA256SUMS            dist/ca-certificates.crt (for the Dockerfile's image)
#
# Usage: scripts/release.sh [VERSION]      (default: git describe --tags --always --dirty)
#        RELEASE_ARCHES="arm64" scripts/release.sh   builds only some of amd64 arm64 armv7
#
# cgo stays on (SQLite is mattn/go-sqlite3's amalgamation, compiled by cgo)
# and everything is linked statically against glibc: the binaries need no
# libc, no shell and no CA file at run time, so they run in a scratch image.
# Debian's cross compilers build arm64 and armv7 from an amd64 machine
# (scripts/test-deps.sh installs them). SQLite's compile options are the
# #cgo lines of the driver, the same for every Linux architecture; CGO_CFLAGS
# below is one value for all three, so nothing differs by architecture but
# the instruction set.
#
# Build tags:
#   netgo, osusergo             Go's own DNS resolver and user lookup instead of
#                               glibc's getaddrinfo/getpwnam, which in a static
#                               binary would dlopen NSS modules at run time (the
#                               linker warns about exactly that).
#   sqlite_omit_load_extension  walsync loads no SQLite extension; omitting
#                               the feature removes SQLite's dlopen calls,
#                               the last static-glibc warning.
#
# The version goes into main.version (what "walsync version" prints).
# Packaging (.deb per architecture, issue "operations"): each
# dist/walsync-linux-ARCH is the /usr/bin/walsync of the package for that
# architecture (Debian names: amd64, arm64, armhf); SHA256SUMS lists them.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
ARCHES=(${RELEASE_ARCHES:-amd64 arm64 armv7})
DIST="${DIST:-dist}"

# Shared with scripts/cross-test.sh, which builds its test binaries the same way.
export WALSYNC_TAGS="netgo,osusergo,sqlite_omit_load_extension"
export CGO_CFLAGS="-O2"
export STATIC_LDFLAGS="-linkmode external -extldflags -static"

# cross_env ARCH prints the go env assignments that build for ARCH.
cross_env() {
	case "$1" in
	amd64) echo "GOOS=linux GOARCH=amd64 CC=gcc" ;;
	arm64) echo "GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc" ;;
	armv7) echo "GOOS=linux GOARCH=arm GOARM=7 CC=arm-linux-gnueabihf-gcc" ;;
	*)
		echo "release.sh: unknown arch $1 (amd64, arm64, armv7)" >&2
		return 1
		;;
	esac
}

# build ARCH OUT PACKAGE builds one static binary.
build() {
	local env
	env=$(cross_env "$1")
	local cc=${env##*CC=}
	command -v "$cc" >/dev/null || {
		echo "release.sh: $cc not found: run scripts/test-deps.sh" >&2
		return 1
	}
	# -trimpath: no build-machine paths in the binary; -s -w: no symbol table
	# or DWARF. The linker's output is kept and shown only on failure: with the
	# tags above a clean static link prints nothing, and any warning is an error.
	local log
	log=$(env $env CGO_ENABLED=1 go build -trimpath -tags "$WALSYNC_TAGS" \
		-ldflags "-s -w $STATIC_LDFLAGS -X main.version=$VERSION" \
		-o "$2" "$3" 2>&1) || {
		echo "$log" >&2
		return 1
	}
	if [ -n "$log" ]; then
		echo "release.sh: the static link of $1 warned (a glibc function that needs shared libraries at run time?):" >&2
		echo "$log" >&2
		return 1
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	mkdir -p "$DIST"
	for a in "${ARCHES[@]}"; do
		start=$SECONDS
		build "$a" "$DIST/walsync-linux-$a" ./cmd/walsync
		echo "built $DIST/walsync-linux-$a ($(stat -c %s "$DIST/walsync-linux-$a") bytes, $((SECONDS - start)) s)"
	done
	# The Dockerfile's scratch image needs roots for https endpoints.
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
		cp /etc/ssl/certs/ca-certificates.crt "$DIST/ca-certificates.crt"
	fi
	(cd "$DIST" && sha256sum walsync-linux-* >SHA256SUMS)
	cat "$DIST/SHA256SUMS"
fi
