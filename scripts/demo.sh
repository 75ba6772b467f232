#!/usr/bin/env bash
# The main job on a fresh machine: an application writes to demo/app.db (one
# row a second) while walsync watches it into the local directory
# demo/replica. Stop with Ctrl-C; the script then restores the replica and
# compares it with the database.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p demo .cache/bin
echo "building walsync..."
go build -o .cache/bin/walsync ./cmd/walsync
go build -o .cache/bin/demowriter ./internal/cmd/demowriter

.cache/bin/demowriter demo/app.db &
writer=$!
sleep 1.5 # the writer creates the database in WAL mode
echo "walsync is replicating demo/app.db into demo/replica; press Ctrl-C to stop"
trap 'true' INT
.cache/bin/walsync watch demo/app.db -b demo/replica || true
trap - INT
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true

echo
echo "restoring demo/app (the name of demo/app.db) into demo/restored.db..."
.cache/bin/walsync restore demo/app -o demo/restored.db -b demo/replica --force
.cache/bin/walsync list -b demo/replica
