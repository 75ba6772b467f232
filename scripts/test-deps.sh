#!/usr/bin/env bash
# test-deps.sh installs everything the walsync test suite needs on a fresh
# Debian machine and verifies it. It is idempotent and quick when everything
# is already present, so CI (.ci/run) may call it unconditionally.
#
# Installs:
#   - apt packages: sqlite3, awscli (the aws CLI used by tests as an
#     independent S3 client), attr (optional: getfattr/setfattr for debugging),
#     and for the cross-architecture tests (scripts/cross-test.sh) the arm64
#     and armv7 cross compilers with their static C libraries and
#     qemu-user-static to run the results
#   - versitygw (S3 gateway used as a real local S3 server), built from source
#     into <repo>/.cache/bin/versitygw (git-ignored).
#
# Environment:
#   VERSITYGW_VERSION  overrides the versitygw module version (default v1.8.0).
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${REPO_ROOT}/.cache/bin"
AWS=/usr/bin/aws

log() { printf '[test-deps] %s\n' "$*"; }
die() {
	printf '[test-deps] ERROR: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------- apt packages
# Maps a package name to a file whose presence proves it is installed.
declare -A PKG_PROBE=(
	[sqlite3]=/usr/bin/sqlite3
	[awscli]=/usr/bin/aws
	[attr]=/usr/bin/getfattr
	[qemu-user-static]=/usr/bin/qemu-aarch64-static
	[gcc-aarch64-linux-gnu]=/usr/bin/aarch64-linux-gnu-gcc
	[libc6-dev-arm64-cross]=/usr/aarch64-linux-gnu/lib/libc.a
	[gcc-arm-linux-gnueabihf]=/usr/bin/arm-linux-gnueabihf-gcc
	[libc6-dev-armhf-cross]=/usr/arm-linux-gnueabihf/lib/libc.a
)
REQUIRED_PKGS=(sqlite3 awscli qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
	gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
OPTIONAL_PKGS=(attr)

missing=()
for pkg in "${REQUIRED_PKGS[@]}" "${OPTIONAL_PKGS[@]}"; do
	if [[ ! -x "${PKG_PROBE[$pkg]}" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} > 0)); then
	if ! command -v apt-get >/dev/null 2>&1; then
		die "missing packages (${missing[*]}) and apt-get is not available; install them by hand"
	fi
	SUDO=()
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "missing packages (${missing[*]}); need root or sudo to install them"
		SUDO=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	log "installing apt packages: ${missing[*]}"
	log "running apt-get update"
	"${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
	# Required packages must install; optional ones are best effort.
	req=()
	opt=()
	for pkg in "${missing[@]}"; do
		if [[ " ${OPTIONAL_PKGS[*]} " == *" ${pkg} "* ]]; then
			opt+=("$pkg")
		else
			req+=("$pkg")
		fi
	done
	if ((${#req[@]} > 0)); then
		"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${req[@]}" ||
			die "apt-get install ${req[*]} failed"
	fi
	if ((${#opt[@]} > 0)); then
		"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${opt[@]}" ||
			log "WARNING: optional packages not installed: ${opt[*]}"
	fi
else
	log "apt packages present: ${REQUIRED_PKGS[*]} ${OPTIONAL_PKGS[*]}"
fi

# ------------------------------------------------------------------ versitygw
if [[ -x "${BIN_DIR}/versitygw" ]]; then
	log "versitygw present: ${BIN_DIR}/versitygw"
else
	command -v go >/dev/null 2>&1 || die "go is not on PATH; cannot build versitygw"
	mkdir -p "${BIN_DIR}"
	log "building versitygw ${VERSITYGW_VERSION} into ${BIN_DIR} (takes ~2 minutes)..."
	start=$SECONDS
	# Build in a temporary GOBIN first so that an interrupted build never
	# leaves a half-written binary behind that would be taken as present.
	tmpbin="$(mktemp -d "${BIN_DIR}/.build.XXXXXX")"
	trap 'rm -rf "${tmpbin}"' EXIT
	(
		cd "${tmpbin}" # outside any module: go install pkg@version mode
		GOBIN="${tmpbin}" go install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}"
	) &
	build_pid=$!
	last=$SECONDS
	while kill -0 "${build_pid}" 2>/dev/null; do
		sleep 1
		if ((SECONDS - last >= 15)) && kill -0 "${build_pid}" 2>/dev/null; then
			last=$SECONDS
			log "  still building versitygw... ($((SECONDS - start))s)"
		fi
	done
	wait "${build_pid}" || die "building versitygw ${VERSITYGW_VERSION} failed (see go output above)"
	mv -f "${tmpbin}/versitygw" "${BIN_DIR}/versitygw" || die "could not move versitygw into ${BIN_DIR}"
	rm -rf "${tmpbin}"
	trap - EXIT
	log "built versitygw in $((SECONDS - start))s"
fi

# --------------------------------------------------------------------- verify
fail=0
if out="$("${AWS}" --version 2>&1)"; then
	log "aws: ${out}"
else
	printf '[test-deps] ERROR: %s --version failed: %s\n' "${AWS}" "${out}" >&2
	fail=1
fi
if out="$(sqlite3 --version 2>&1)"; then
	log "sqlite3: ${out}"
else
	printf '[test-deps] ERROR: sqlite3 --version failed: %s\n' "${out}" >&2
	fail=1
fi
if out="$("${BIN_DIR}/versitygw" --version 2>&1)"; then
	log "versitygw: $(printf '%s' "${out}" | tr '\n' ' ')"
else
	printf '[test-deps] ERROR: %s --version failed: %s\n' "${BIN_DIR}/versitygw" "${out}" >&2
	fail=1
fi
((fail == 0)) || die "test dependencies are incomplete (see errors above)"
log "all test dependencies OK"
