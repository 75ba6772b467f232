#!/usr/bin/env bash
# run.sh compares the memory of walsync's S3 client (storage/s3) with
# aws-sdk-go-v2's service/s3 client: two small programs each start a local
# versitygw, create their client, PUT the same 100 LTX objects of 64 KiB with
# the same keys and metadata, and report VmRSS, VmHWM, GC cycles and their
# binary size. Each runs with GOMEMLIMIT unset and with GOMEMLIMIT=8MiB.
#
#   bench/s3client/run.sh [runs per configuration, default 5]
#
# Needs <repo>/.cache/bin/versitygw (scripts/test-deps.sh installs it).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${DIR}/../.." && pwd)"
OUT="${DIR}/out"
RUNS="${1:-5}"
VERSITYGW="${WALSYNC_VERSITYGW:-${REPO}/.cache/bin/versitygw}"
LIMITS=("" "8MiB")

if [[ ! -x "${VERSITYGW}" ]]; then
	echo "run.sh: no versitygw at ${VERSITYGW}: run scripts/test-deps.sh" >&2
	exit 1
fi

mkdir -p "${OUT}"
cd "${DIR}"
export GOFLAGS=-mod=mod
go build -o "${OUT}/walsync-client" ./walsync
go build -o "${OUT}/sdk-client" ./sdk
go build -o "${OUT}/baseline" ./baseline
go build -o "${OUT}/report" ./report

RESULTS="${OUT}/results.jsonl"
: >"${RESULTS}"
# A clean environment: no AWS_* variable (walsync's client reads
# AWS_CA_BUNDLE, for instance, and would load a certificate pool that an
# http:// endpoint never uses), no GOGC, and an empty HOME (no ~/.aws).
HOME_DIR="${OUT}/home"
mkdir -p "${HOME_DIR}"
for limit in "${LIMITS[@]}"; do
	for ((i = 1; i <= RUNS; i++)); do
		# Interleave the programs so that drift in the machine hits all.
		for bin in walsync-client sdk-client baseline; do
			env -i PATH="${PATH}" HOME="${HOME_DIR}" TMPDIR="${TMPDIR:-/tmp}" ${limit:+GOMEMLIMIT="${limit}"} \
				"${OUT}/${bin}" -versitygw "${VERSITYGW}" >>"${RESULTS}"
		done
	done
done
{
	echo "$(go version); $(uname -srm); $(nproc) CPUs"
	echo "aws-sdk-go-v2/service/s3 $(go list -m -f '{{.Version}}' github.com/aws/aws-sdk-go-v2/service/s3)"
	"${OUT}/report" <"${RESULTS}"
} | tee "${OUT}/table.txt"
