#!/usr/bin/env bash
# Runs every test of walsync: installs what the tests need (scripts/test-deps.sh),
# then vet and the race-enabled test suite of the main module and of the
# test-only modules (Litestream compatibility). Long torture/scale runs:
#   WALSYNC_TORTURE=5m scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh

export CGO_ENABLED=1
echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test (main module)"
# go test shows a passing package's output only with -v: the fault suite
# also writes its table to this file, printed after the run.
export WALSYNC_FAULTS_TABLE="$(mktemp)"
trap 'rm -f "$WALSYNC_FAULTS_TABLE"' EXIT
go test -race -count=1 -timeout 25m ./...
cat "$WALSYNC_FAULTS_TABLE"
echo "== release builds: arm64/armv7 under qemu, amd64 in an empty root, darwin type-check"
bash scripts/cross-test.sh
for mod in tests/compat; do
	if [ -f "$mod/go.mod" ]; then
		echo "== go test ($mod)"
		(cd "$mod" && go vet ./... && go test -count=1 -timeout 15m ./...)
	fi
done
