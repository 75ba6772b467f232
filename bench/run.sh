#!/usr/bin/env bash
# run.sh benchmarks walsync against Litestream v0.5.18 on a local versitygw.
#
#   bench/run.sh [--dbs 1,10,100] [--duration 60s] [other bench flags]
#   bench/run.sh --history [--scale 60] [--dbs 10]   (a simulated day, history.go)
#   bench/run.sh --scale [--cases 10x100%,1000x10%,10000x1%,idle1000]
#                [--replica s3|file|both] [--duration 60s] [--idle 10m]
#                (issue 4's scale cases, scale.go; quick check:
#                 --cases 10x100%,1000x10%,idle1000 --duration 20s --idle 1m)
#   bench/run.sh --memory [--size small|full|objects]
#                (issue 20's memory goals, memory.go: peak RSS of each
#                 operation on one large database, file replicas; output
#                 in memory-*/ and memory-latest.txt)
#
# Installs test dependencies (scripts/test-deps.sh), builds Litestream v0.5.18
# into <repo>/.cache/bin if missing, builds walsync and the bench program into
# bench/out/bin, runs every N for both tools and writes the tables to
# bench/out/<timestamp>/results.txt and bench/out/latest.txt (history-*/
# history-latest.txt, scale-*/latest-scale.txt for the other modes). The
# open-files limit is raised to the hard limit for everything started here.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${BENCH_DIR}/.." && pwd)"
BIN_DIR="${REPO_ROOT}/.cache/bin"
OUT_DIR="${BENCH_DIR}/out"
LITESTREAM_VERSION=v0.5.18

log() { printf '[bench] %s\n' "$*" >&2; }

DBS=
DURATION=60s
HISTORY=0
SCALE=0
MEMORY=0
EXTRA=()
while (($# > 0)); do
	case "$1" in
	--dbs) DBS="$2"; shift 2 ;;
	--dbs=*) DBS="${1#*=}"; shift ;;
	--duration) DURATION="$2"; shift 2 ;;
	--duration=*) DURATION="${1#*=}"; shift ;;
	--history) HISTORY=1; EXTRA+=("$1"); shift ;;
	--scale)
		# "--scale 60" is --history's time factor; a bare --scale is the mode.
		if (($# > 1)) && [[ "$2" =~ ^[0-9.]+$ ]]; then
			EXTRA+=("$1" "$2"); shift 2
		else
			SCALE=1; EXTRA+=(--scale-mode); shift
		fi ;;
	--memory) MEMORY=1; EXTRA+=("$1"); shift ;;
	-h | --help) sed -n '2,21p' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) EXTRA+=("$1"); shift ;;
	esac
done

if ((SCALE && HISTORY)); then
	echo "run.sh: --scale (the mode) and --history are separate modes" >&2
	exit 2
fi
if ((MEMORY && (SCALE || HISTORY))); then
	echo "run.sh: --memory is a separate mode" >&2
	exit 2
fi
if ((MEMORY)) && [[ ! -x /usr/bin/time ]]; then
	log "--memory: /usr/bin/time (Debian package time) is missing: peak RSS falls back to sampled VmHWM"
fi
if [[ -z "${DBS}" ]]; then
	if ((HISTORY)); then DBS=10; else DBS=1,10,100; fi
fi

"${REPO_ROOT}/scripts/test-deps.sh" >&2

if [[ ! -x "${BIN_DIR}/litestream" ]]; then
	log "building litestream ${LITESTREAM_VERSION} into ${BIN_DIR} (takes a few minutes)..."
	mkdir -p "${BIN_DIR}"
	tmpbin="$(mktemp -d "${BIN_DIR}/.build.XXXXXX")"
	trap 'rm -rf "${tmpbin}"' EXIT
	(cd "${tmpbin}" && GOBIN="${tmpbin}" GOFLAGS="${GOFLAGS:-} -trimpath" \
		go install "github.com/benbjohnson/litestream/cmd/litestream@${LITESTREAM_VERSION}")
	mv -f "${tmpbin}/litestream" "${BIN_DIR}/litestream"
	rm -rf "${tmpbin}"
	trap - EXIT
fi
log "litestream: $("${BIN_DIR}/litestream" version 2>&1 | head -1)"

# Both tools get the hard open-files limit (10,000 databases need many).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "open files limit: $(ulimit -n) (hard $(ulimit -Hn))"

mkdir -p "${OUT_DIR}/bin"
log "building walsync ($(git -C "${REPO_ROOT}" rev-parse --short HEAD 2>/dev/null || echo '?'))"
(cd "${REPO_ROOT}" && go build -o "${OUT_DIR}/bin/walsync" ./cmd/walsync)
log "building bench"
(cd "${BENCH_DIR}" && go build -o "${OUT_DIR}/bin/bench" .)

cd "${BENCH_DIR}"
exec "${OUT_DIR}/bin/bench" \
	--dbs "${DBS}" --duration "${DURATION}" \
	--walsync "${OUT_DIR}/bin/walsync" \
	--litestream "${BIN_DIR}/litestream" \
	--versitygw "${BIN_DIR}/versitygw" \
	--out "${OUT_DIR}" \
	"${EXTRA[@]+"${EXTRA[@]}"}"
