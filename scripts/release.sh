#!/usr/bin/env bash
# release.sh builds walsync's static release binaries into dist/:
#
#   dist/walsync-linux-amd64   dist/walsync-linux-arm64   dist/walsync-linux-armv7
#   dist/SHA256SUMS            the binaries of this run, and nothing else
#   dist/rootfs/               the rest of the Dockerfile's image: tmp/ (mode
#                              1777) and etc/ssl/certs/ca-certificates.crt
#
# Usage: scripts/release.sh [VERSION]      (default: git describe --tags --always --dirty)
#        RELEASE_ARCHES="arm64" scripts/release.sh   builds only some of amd64 arm64 armv7
#        CA_BUNDLE=FILE                     the image's CA roots (default: the host's
#                                           /etc/ssl/certs/ca-certificates.crt; none: an error)
#
# All or nothing: the binaries are built into a temporary directory and
# dist/ is replaced (old walsync-linux-*, SHA256SUMS, rootfs/ removed) only
# when every requested architecture built and is static, so SHA256SUMS never
# mixes runs or names a file that is not there.
#
# cgo stays on (SQLite is mattn/go-sqlite3's amalgamation, compiled by cgo)
# and everything is linked statically against glibc: the binaries need no
# libc, no shell and no CA file at run time, so they run in a scratch image.
# Each binary is checked after the link (no NEEDED, no INTERP, file(1) says
# statically linked): a compiler that quietly links dynamically fails the build.
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
# The version goes into main.version (what "walsync version" prints), and
# -buildvcs=true stamps the commit even where GOFLAGS says -buildvcs=false
# (so the build must run in a git checkout).
# Packaging (.deb per architecture, issue "operations"): each
# dist/walsync-linux-ARCH is the /usr/bin/walsync of the package for that
# architecture (Debian names: amd64, arm64, armhf); SHA256SUMS lists them.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
COMMIT="$(git rev-parse HEAD 2>/dev/null || true)"
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
	log=$(env $env CGO_ENABLED=1 go build -trimpath -buildvcs=true -tags "$WALSYNC_TAGS" \
		-ldflags "-s -w $STATIC_LDFLAGS -X main.version=$VERSION -X main.commit=$COMMIT" \
		-o "$2" "$3" 2>&1) || {
		echo "$log" >&2
		return 1
	}
	if [ -n "$log" ]; then
		echo "release.sh: the static link of $1 warned (a glibc function that needs shared libraries at run time?):" >&2
		echo "$log" >&2
		return 1
	fi
	check_static "$2"
}

# check_static FILE fails unless FILE is a statically linked ELF executable:
# no shared library it needs (NEEDED), no program interpreter (INTERP).
check_static() {
	local dyn hdr kind
	dyn=$(readelf -d "$1") && hdr=$(readelf -lW "$1") && kind=$(file -b "$1") || {
		echo "release.sh: cannot inspect $1 (readelf, file)" >&2
		return 1
	}
	if grep -q '(NEEDED)' <<<"$dyn" || grep -q 'INTERP' <<<"$hdr" || [[ "$kind" != *"statically linked"* ]]; then
		echo "release.sh: $1 is not statically linked: $kind" >&2
		grep -e '(NEEDED)' -e 'interpreter' <<<"$dyn$hdr" >&2 || true
		return 1
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
	# The Dockerfile's scratch image needs roots for https endpoints; an image
	# without them would fail only at the first TLS handshake.
	[ -s "$CA_BUNDLE" ] || {
		echo "release.sh: no CA bundle at $CA_BUNDLE: install ca-certificates or set CA_BUNDLE" >&2
		exit 1
	}
	for tool in readelf file sha256sum; do
		command -v "$tool" >/dev/null || {
			echo "release.sh: $tool not found (binutils, file, coreutils)" >&2
			exit 1
		}
	done
	for a in "${ARCHES[@]}"; do cross_env "$a" >/dev/null; done
	mkdir -p "$DIST"
	# Staged inside dist/ so the final moves are renames on one file system.
	stage=$(mktemp -d "$DIST/.release.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	for a in "${ARCHES[@]}"; do
		start=$SECONDS
		build "$a" "$stage/walsync-linux-$a" ./cmd/walsync
		chmod 0755 "$stage/walsync-linux-$a"
		echo "built walsync-linux-$a ($(stat -c %s "$stage/walsync-linux-$a") bytes, static, $((SECONDS - start)) s)"
	done
	# The image's directories, modes set here rather than by the builder:
	# WORKDIR or COPY would make /tmp root's 0755, and a non-root user
	# (USER 65534, runAsUser) could write no temp file. Explicit modes also
	# keep a umask of 077 out of the image.
	install -d -m 0755 "$stage/rootfs" "$stage/rootfs/etc" "$stage/rootfs/etc/ssl" "$stage/rootfs/etc/ssl/certs"
	install -d -m 1777 "$stage/rootfs/tmp"
	install -m 0644 "$CA_BUNDLE" "$stage/rootfs/etc/ssl/certs/ca-certificates.crt"
	(cd "$stage" && sha256sum walsync-linux-* >SHA256SUMS)
	chmod 0644 "$stage/SHA256SUMS"
	rm -rf "$DIST"/walsync-linux-* "$DIST/SHA256SUMS" "$DIST/rootfs" "$DIST/ca-certificates.crt"
	mv "$stage"/walsync-linux-* "$stage/SHA256SUMS" "$stage/rootfs" "$DIST/"
	cat "$DIST/SHA256SUMS"
fi
