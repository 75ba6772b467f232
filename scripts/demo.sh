#!/usr/bin/env bash
# The main job on a fresh machine: an application writes one row a second
# to demo/app.db while walsync watches it into the local directory
# demo/replica, and a line is printed for each sync that lands there (TXID,
# commits, sizes, lag). Stop with Ctrl-C: the application stops first,
# walsync ships what is left and stops, then the replica is restored into
# demo/restored.db and compared with demo/app.db row by row. Run it again
# to resume where it stopped. WALSYNC_DEMO_DIR puts it elsewhere than demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${WALSYNC_DEMO_DIR:-demo}
bin=$demo/bin
mkdir -p "$bin"
echo "building walsync..."
go build -o "$bin/walsync" ./cmd/walsync
go build -o "$bin/demowriter" ./internal/cmd/demowriter

db=$demo/app.db replica=$demo/replica log=$demo/walsync.log
rm -f "$demo/restored.db" "$demo/restored.db-wal" "$demo/restored.db-shm"
if [ -e "$db" ]; then
	echo "resuming: $db and $replica are from an earlier run"
fi

# The application: Ctrl-C stops it (it is in the terminal's process group).
"$bin/demowriter" "$db" "$replica" &
writer=$!
# walsync, in a session of its own so that Ctrl-C does not reach it: it is
# stopped after the application, so that its last sync has every commit.
for _ in $(seq 50); do [ -s "$db" ] && break; sleep 0.1; done
setsid "$bin/walsync" watch "$db" -b "$replica" --sync-interval 1s 2>"$log" &
watcher=$!
trap 'kill -INT "$watcher" "$writer" 2>/dev/null || true' EXIT
sleep 0.5
name=$(sed -n 's/.*msg=replicating .*name=\([^ ]*\).*/\1/p' "$log" | head -n 1)
echo "walsync is replicating $db into $replica as \"${name:-?}\" (its log: $log); press Ctrl-C to stop"

trap 'true' INT
wait "$writer" || true
wait "$writer" 2>/dev/null || true
trap - INT
echo
echo "the application stopped; walsync ships what is left and stops..."
kill -INT "$watcher" 2>/dev/null || true
wait "$watcher" || true
trap - EXIT
problems=$(grep -c 'level=\(WARN\|ERROR\)' "$log" || true)
if [ "$problems" != 0 ]; then
	echo "walsync logged $problems warning(s) or error(s) in $log:"
	grep 'level=\(WARN\|ERROR\)' "$log" | tail -n 5
fi

echo
echo "restoring $db (by its path, as walsync watch was given it) into $demo/restored.db..."
"$bin/walsync" restore "$db" -o "$demo/restored.db" -b "$replica"
"$bin/demowriter" compare "$db" "$demo/restored.db"
"$bin/walsync" list -b "$replica"
