#!/usr/bin/env bash
# cross-test.sh tests walsync's release builds where they will run
# (scripts/test.sh calls it; scripts/test-deps.sh installs what it needs):
#
#  1. the capture, wal, restore, storage/file and tests/cross tests that
#     touch byte order, alignment, 32-bit sizes, fcntl lock structs and the
#     mmap of the -shm, built for arm64 and armv7 and run under qemu user
#     emulation;
#  2. end to end, the static walsync of each architecture (arm64, armv7
#     under qemu, amd64 natively): watch a database while sqlite3 writes to
#     it, SIGTERM, restore, compare every row with sqlite3;
#  3. the amd64 end-to-end run again in an empty root (chroot: the binary, a
#     tmp directory and the database, no libc, shell, /dev or CA file);
#  4. every package type-checks for darwin/arm64 (tests/cross/typecheck).
#
# Output and scratch files go to .cache/cross/ (git-ignored). Go's build
# cache stays the user's (go env GOCACHE), shared with scripts/test.sh and
# release.sh: SQLite's C for two more architectures takes minutes to compile
# the first time and seconds after.
#
# Environment: CROSS_ARCHES (default "arm64 armv7"; empty: amd64 and darwin only).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/release.sh # build, cross_env, WALSYNC_TAGS, CGO_CFLAGS, STATIC_LDFLAGS

OUT="$PWD/.cache/cross"
ARCHES=(${CROSS_ARCHES-arm64 armv7})
ROWS=${CROSS_ROWS:-60}

die() {
	echo "cross-test: FAIL: $*" >&2
	exit 1
}
for tool in qemu-aarch64-static qemu-arm-static aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc sqlite3 chroot; do
	command -v "$tool" >/dev/null || die "$tool is missing: run scripts/test-deps.sh"
done

qemu_for() {
	case "$1" in
	amd64) echo "" ;;
	arm64) echo "qemu-aarch64-static" ;;
	armv7) echo "qemu-arm-static" ;;
	esac
}

# The tests worth running on each architecture, by package.
declare -A RUN=(
	[wal]='^(TestScanRealWAL|TestParseHeaderRejects|TestReadFramePage|TestFrameIndexSpills|TestFrameIndexSparseSpill)$'
	[capture]='^(TestLeanSQLite|TestSyncRestoreAcrossCheckpoints|TestColdWake|TestKeepsSQLiteLocks|TestNeverWritesIntoDatabase|TestUncommittedNotShipped|TestSecondWriterConflict)$'
	[restore]='^(TestChainCases|TestPlan|TestRestoreHostileCommit|TestForceRestoreRefusesOpenDatabase|TestRestoreFileMode|TestConcurrentRestores)$'
	[storage/file]='^(TestConformance|TestLayout)$'
	[tests/cross]='^(TestWALFrameBeyond4GiB|TestTXIDsAbove32Bits)$'
)

# unit ARCH runs the chosen tests of every package for ARCH under qemu.
unit() {
	local arch=$1 env pkg bin start
	env=$(cross_env "$arch")
	mkdir -p "$OUT/$arch"
	for pkg in wal capture restore storage/file tests/cross; do
		bin="$OUT/$arch/$(echo "$pkg" | tr / _).test"
		start=$SECONDS
		env $env CGO_ENABLED=1 go test -c -tags "$WALSYNC_TAGS" -ldflags "$STATIC_LDFLAGS" -o "$bin" "./$pkg"
		local built=$((SECONDS - start))
		start=$SECONDS
		# The test binary runs in its package directory, as go test would.
		(cd "$pkg" && $(qemu_for "$arch") "$bin" -test.run "${RUN[$pkg]}" -test.count 1 -test.timeout 5m -test.v) >"$bin.log" 2>&1 ||
			{
				cat "$bin.log"
				die "$pkg tests on $arch"
			}
		# Every test named must have run and passed: a renamed test would
		# otherwise drop out of the pattern unnoticed.
		local want passed
		want=$(echo "${RUN[$pkg]}" | tr -cd '|' | wc -c)
		want=$((want + 1))
		passed=$(grep -c '^--- PASS: ' "$bin.log" || true)
		[ "$passed" = "$want" ] || {
			cat "$bin.log"
			die "$pkg on $arch: $passed of $want tests passed"
		}
		echo "cross-test: $arch $pkg: $passed tests passed (build ${built}s, run $((SECONDS - start))s under qemu)"
	done
}

# e2e NAME DIR RUN... : RUN is the command that runs walsync in DIR (its
# working directory), where data/app.db is the database.
e2e() {
	local name=$1 dir=$2
	shift 2
	local db="$dir/data/app.db"
	sqlite3 "$db" 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, s TEXT);' >/dev/null
	sqlite3 "$db" 'INSERT INTO t(v, s) SELECT randomblob(3000), hex(randomblob(20)) FROM generate_series(1, 200);' 2>/dev/null ||
		sqlite3 "$db" 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 200) INSERT INTO t(v, s) SELECT randomblob(3000), hex(randomblob(20)) FROM c;'
	"$@" watch data/app.db -b replica >"$dir/watch.log" 2>&1 &
	local watch=$!
	# The application: small transactions while walsync replicates, one
	# that rewrites many pages, and a checkpoint of its own.
	for i in $(seq 1 "$ROWS"); do
		sqlite3 "$db" ".timeout 5000" "INSERT INTO t(v, s) VALUES (randomblob($((i * 50))), 'row $i');" >/dev/null
		if [ "$i" = $((ROWS / 2)) ]; then
			sqlite3 "$db" ".timeout 5000" "UPDATE t SET s = s || '+' WHERE id % 3 = 0; PRAGMA wal_checkpoint(PASSIVE);" >/dev/null
		fi
		sleep 0.05
	done
	kill -0 "$watch" 2>/dev/null || {
		cat "$dir/watch.log"
		die "$name: walsync watch exited early"
	}
	kill -TERM "$watch"
	local rc=0
	wait "$watch" || rc=$?
	[ "$rc" = 0 ] || {
		cat "$dir/watch.log"
		die "$name: walsync watch exited $rc after SIGTERM"
	}
	"$@" restore data/app -o data/restored.db -b replica >"$dir/restore.log" 2>&1 || {
		cat "$dir/watch.log" "$dir/restore.log"
		die "$name: restore failed"
	}
	local want got
	want=$(sqlite3 "$db" 'SELECT id, hex(v), s FROM t ORDER BY id' | sha256sum)
	got=$(sqlite3 "$dir/data/restored.db" 'SELECT id, hex(v), s FROM t ORDER BY id' | sha256sum)
	local n
	n=$(sqlite3 "$dir/data/restored.db" 'SELECT count(*) FROM t')
	[ "$want" = "$got" ] && [ "$n" = $((200 + ROWS)) ] || {
		cat "$dir/watch.log"
		die "$name: the restored database differs from the original ($n rows, want $((200 + ROWS)))"
	}
	echo "cross-test: $name end to end: watch, SIGTERM, restore: $n rows equal"
}

# fresh_root DIR BIN lays out an empty root: the binary, tmp and the data dir.
fresh_root() {
	rm -rf "$1"
	mkdir -p "$1/data" "$1/tmp" "$1/replica"
	chmod 1777 "$1/tmp"
	cp "$2" "$1/walsync"
}

total=$SECONDS
mkdir -p "$OUT"
for arch in "${ARCHES[@]}"; do
	start=$SECONDS
	build "$arch" "$OUT/walsync-$arch" ./cmd/walsync
	echo "cross-test: built walsync for $arch in $((SECONDS - start))s"
	unit "$arch"
	start=$SECONDS
	fresh_root "$OUT/e2e-$arch" "$OUT/walsync-$arch"
	dir="$OUT/e2e-$arch"
	e2e "$arch (qemu)" "$dir" env -C "$dir" TMPDIR="$dir/tmp" "$(qemu_for "$arch")" "$dir/walsync"
	echo "cross-test: $arch end to end took $((SECONDS - start))s"
done

# The amd64 static binary in an empty root.
build amd64 "$OUT/walsync-amd64" ./cmd/walsync
deps=$(ldd "$OUT/walsync-amd64" 2>&1 || true) # ldd exits 1 on a static binary
[[ "$deps" == *"not a dynamic executable"* ]] || die "walsync-amd64 is dynamically linked: $deps"
root="$OUT/root"
fresh_root "$root" "$OUT/walsync-amd64"
[ "$(id -u)" = 0 ] || die "the empty-root check needs root for chroot (CI runs as root)"
# env -i: no PATH, HOME or TMPDIR either; the root has no /etc, /dev, /proc.
e2e "amd64 (empty root: $(cd "$root" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' '))" "$root" \
	env -i "$(command -v chroot)" "$root" /walsync

# darwin/arm64: non-test code of every package; tests of every package but
# the two that mount file systems (restore's safety test, tests/faults).
start=$SECONDS
go run ./tests/cross/typecheck -goos darwin -goarch arm64 -tests=false ./...
go run ./tests/cross/typecheck -goos darwin -goarch arm64 \
	$(go list ./... | grep -v -e '/restore$' -e '/tests/faults$')
echo "cross-test: darwin type-check took $((SECONDS - start))s"
echo "cross-test: all checks passed in $((SECONDS - total))s"
