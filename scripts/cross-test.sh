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
#  3. scripts/release.sh itself (amd64 only, into .cache/cross/release): it
#     fails with a gcc that drops -static and with no CA bundle, leaving dist/
#     as it was; a good run replaces dist/, SHA256SUMS lists exactly its
#     files, and the binary carries its commit (vcs.revision);
#  4. the amd64 end-to-end run again in an empty root (chroot: the binary, a
#     tmp directory and the database, no libc, shell, /dev or CA file), and
#     as user 65534 in the root the Dockerfile makes (its COPY, WORKDIR and
#     ENV lines replayed on the release's dist/);
#  5. every package type-checks for darwin/arm64 (tests/cross/typecheck).
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
for tool in qemu-aarch64-static qemu-arm-static aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc sqlite3 chroot readelf file; do
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
# working directory), where data/app.db is the database. With E2E_OWNER
# (uid:gid), data/ and replica/ are that user's, as a container's volumes
# would be (sqlite3 as root keeps -wal and -shm the database owner's).
e2e() {
	local name=$1 dir=$2
	shift 2
	local db="$dir/data/app.db"
	sqlite3 "$db" 'PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB, s TEXT);' >/dev/null
	sqlite3 "$db" 'INSERT INTO t(v, s) SELECT randomblob(3000), hex(randomblob(20)) FROM generate_series(1, 200);' 2>/dev/null ||
		sqlite3 "$db" 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 200) INSERT INTO t(v, s) SELECT randomblob(3000), hex(randomblob(20)) FROM c;'
	if [ -n "${E2E_OWNER:-}" ]; then
		chown -R "$E2E_OWNER" "$dir/data" "$dir/replica"
	fi
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

# release.sh, amd64 only, into its own dist/ ($rel is the Dockerfile's
# context below): what it refuses, and what a good run leaves.
start=$SECONDS
rel="$OUT/release"
rm -rf "$rel"
mkdir -p "$rel/dist" "$rel/nostatic"
# An earlier release of another architecture, which this one must replace.
echo stale >"$rel/dist/walsync-linux-arm64"
(cd "$rel/dist" && sha256sum walsync-linux-arm64 >SHA256SUMS)
before=$(cd "$rel/dist" && sha256sum SHA256SUMS walsync-linux-arm64)
# A gcc that drops -static links a dynamic binary without a warning.
printf '%s\n' '#!/bin/sh' 'for a in "$@"; do shift; [ "$a" = -static ] || set -- "$@" "$a"; done' \
	'exec /usr/bin/gcc "$@"' >"$rel/nostatic/gcc"
chmod +x "$rel/nostatic/gcc"
if PATH="$rel/nostatic:$PATH" DIST="$rel/dist" RELEASE_ARCHES=amd64 bash scripts/release.sh cross-test >"$rel/nostatic.log" 2>&1; then
	cat "$rel/nostatic.log"
	die "release.sh exited 0 with a gcc that drops -static"
fi
grep -q 'not statically linked' "$rel/nostatic.log" || {
	cat "$rel/nostatic.log"
	die "release.sh failed with a gcc that drops -static, but not at its static check"
}
if CA_BUNDLE="$rel/no-such-ca.crt" DIST="$rel/dist" RELEASE_ARCHES=amd64 bash scripts/release.sh cross-test >"$rel/noca.log" 2>&1; then
	cat "$rel/noca.log"
	die "release.sh exited 0 with no CA bundle"
fi
grep -q 'no CA bundle' "$rel/noca.log" || {
	cat "$rel/noca.log"
	die "release.sh failed with no CA bundle, but without saying so"
}
[ "$(cd "$rel/dist" && sha256sum SHA256SUMS walsync-linux-arm64)" = "$before" ] &&
	[ "$(ls -A "$rel/dist" | tr '\n' ' ')" = "SHA256SUMS walsync-linux-arm64 " ] ||
	die "a failed release.sh changed dist/: $(ls -A "$rel/dist" | tr '\n' ' ')"
DIST="$rel/dist" RELEASE_ARCHES=amd64 bash scripts/release.sh cross-test >"$rel/release.log" 2>&1 || {
	cat "$rel/release.log"
	die "release.sh amd64"
}
[ "$(ls -A "$rel/dist" | tr '\n' ' ')" = "SHA256SUMS rootfs walsync-linux-amd64 " ] ||
	die "dist/ after release.sh amd64 holds: $(ls -A "$rel/dist" | tr '\n' ' ')"
[ "$(cut -d' ' -f3- "$rel/dist/SHA256SUMS")" = "walsync-linux-amd64" ] ||
	die "SHA256SUMS does not list exactly this run's binary: $(cat "$rel/dist/SHA256SUMS")"
(cd "$rel/dist" && sha256sum --check --strict --quiet SHA256SUMS) || die "SHA256SUMS does not match dist/"
bin="$rel/dist/walsync-linux-amd64"
# The commit --version names: Go's vcs.revision, or release.sh's -X
# main.commit where Go stamps none (a git worktree). A commit of this
# repository (not compared with HEAD: others may commit meanwhile).
rev=$("$bin" --version | sed -n 's/^walsync cross-test (commit \([0-9a-f]*\).*/\1/p')
[[ "$rev" =~ ^[0-9a-f]{40}$ ]] && git cat-file -e "$rev^{commit}" ||
	die "walsync --version names no commit of this repository: $("$bin" --version)"
deps=$(ldd "$bin" 2>&1 || true) # ldd exits 1 on a static binary
[[ "$deps" == *"not a dynamic executable"* ]] || die "walsync-linux-amd64 is dynamically linked: $deps"
echo "cross-test: release.sh refuses a dynamic link and a missing CA bundle, replaces dist/ whole, stamps the commit (${rev:0:12}) in $((SECONDS - start))s"

# docker_root ROOT CONTEXT lays out ROOT as the Dockerfile's final stage
# makes it from CONTEXT for linux/amd64 (its COPY, WORKDIR and ENV lines; an
# instruction not replayed here is an error, so the check follows the
# Dockerfile) and prints its ENV assignments, one a line.
docker_root() {
	local root=$1 ctx=$2 instr args src dst
	[ -n "$root" ] && [ -n "$ctx" ] || die "docker_root: empty argument"
	rm -rf "$root"
	install -d -m 0755 "$root"
	while read -r instr args; do
		args=${args//'${TARGETARCH}'/amd64}
		args=${args//'${TARGETVARIANT}'/}
		case "$instr" in
		'' | '#'* | FROM | ARG | ENTRYPOINT | CMD | LABEL | USER | EXPOSE | VOLUME) ;;
		COPY)
			set -- $args
			[ $# = 2 ] && [[ "$1" != --* ]] || die "Dockerfile: COPY $args: not replayed here"
			src="$ctx/$1" dst="$root/$2"
			if [ -d "$src" ]; then
				# A directory's contents, with their modes (owner root).
				[ -d "$dst" ] || install -d -m 0755 "$dst"
				cp -R --preserve=mode "$src/." "$dst/"
			else
				[ -d "$(dirname "$dst")" ] || install -d -m 0755 "$(dirname "$dst")"
				cp --preserve=mode "$src" "$dst"
			fi
			;;
		# The builder makes a missing WORKDIR root's, mode 0755.
		WORKDIR) [ -d "$root$args" ] || install -d -m 0755 "$root$args" ;;
		ENV) echo "$args" ;;
		*) die "Dockerfile: $instr: not replayed here" ;;
		esac
	done <Dockerfile
}

# The amd64 static binary in an empty root.
[ "$(id -u)" = 0 ] || die "the empty-root checks need root for chroot (CI runs as root)"
root="$OUT/root"
fresh_root "$root" "$bin"
# env -i: no PATH, HOME or TMPDIR either; the root has no /etc, /dev, /proc.
e2e "amd64 (empty root: $(cd "$root" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' '))" "$root" \
	env -i "$(command -v chroot)" "$root" /walsync

# The image as the Dockerfile makes it, run as nobody (docker run --user
# 65534, Kubernetes runAsUser): walsync's temp files go to TMPDIR or /tmp.
root="$OUT/docker-root"
docker_root "$root" "$rel" >"$OUT/docker-env"
mkdir -p "$root/data" "$root/replica"
E2E_OWNER=65534:65534 e2e "amd64 (the Dockerfile's root, as user 65534: $(cd "$root" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' '))" "$root" \
	env -i $(cat "$OUT/docker-env") "$(command -v chroot)" --userspec=65534:65534 "$root" /walsync

# darwin/arm64: non-test code of every package; tests of every package but
# the two that mount file systems (restore's safety test, tests/faults).
start=$SECONDS
go run ./tests/cross/typecheck -goos darwin -goarch arm64 -tests=false ./...
go run ./tests/cross/typecheck -goos darwin -goarch arm64 \
	$(go list ./... | grep -v -e '/restore$' -e '/tests/faults$')
echo "cross-test: darwin type-check took $((SECONDS - start))s"
echo "cross-test: all checks passed in $((SECONDS - total))s"
