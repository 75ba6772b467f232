package compat

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3" // "sqlite3": SQLite in C, as walsync links it
	_ "modernc.org/sqlite"          // "sqlite": SQLite in Go, as Litestream links it
)

// The two SQLite drivers are two separate copies of SQLite. Two copies in
// one process do not see each other's locks (POSIX locks never conflict
// within a process; each copy coordinates its own connections in memory), so
// a database that one tool replicates live is written with that tool's copy:
// mattn/go-sqlite3 beside walsync's capture, modernc.org/sqlite beside
// Litestream. Restored files, which nothing else touches, may be read with
// either.
const (
	driverMattn   = "sqlite3"
	driverModernc = "sqlite"
)

const schema = `
CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER, b BLOB);
CREATE INDEX t_v ON t (v);
CREATE TABLE kv (k TEXT PRIMARY KEY, val BLOB) WITHOUT ROWID;
`

// createDB creates an empty database in WAL mode with the given page size.
func createDB(t *testing.T, driver, path string, pageSize int) {
	t.Helper()
	db, err := sql.Open(driver, "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	mustExec(t, db, fmt.Sprintf("PRAGMA page_size = %d", pageSize))
	mustExec(t, db, "PRAGMA journal_mode = WAL")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The header (big-endian at offset 16; 1 means 65536) must have it.
	hdr := make([]byte, 100)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatalf("read header of %s: %v", path, err)
	}
	got := int(hdr[16])<<8 | int(hdr[17])
	if got == 1 {
		got = 65536
	}
	if got != pageSize || hdr[18] != 2 || hdr[19] != 2 {
		t.Fatalf("%s has %d-byte pages and file format %d/%d, want %d-byte pages in WAL mode (2/2)", path, got, hdr[18], hdr[19], pageSize)
	}
}

// openApp opens path read-write in WAL mode, as an application would, with
// the given driver. One connection, so PRAGMAs stick and transactions are
// simple.
func openApp(t *testing.T, driver, path string) *sql.DB {
	t.Helper()
	var dsn string
	switch driver {
	case driverMattn:
		dsn = "file:" + path + "?_busy_timeout=5000&_journal_mode=WAL"
	case driverModernc:
		dsn = "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(wal)"
	default:
		t.Fatalf("unknown driver %q", driver)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode of %s is %q, want wal", path, mode)
	}
	return db
}

// openRestored opens a restored database read-only.
func openRestored(t *testing.T, driver, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// workload makes deterministic changes to the schema's tables, one round at
// a time: several transactions per round, blobs from empty to several pages
// (overflow chains), NULLs, updates and deletes.
type workload struct {
	rng *rand.Rand
}

func newWorkload(seed uint64) *workload { return &workload{rng: rand.New(rand.NewPCG(seed, 0x5eed))} }

func (w *workload) blob(max int) []byte {
	b := make([]byte, w.rng.IntN(max+1))
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return b
}

func (w *workload) round(t *testing.T, db *sql.DB, r int) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		var b any = w.blob(6000)
		if i%13 == 0 {
			b = nil
		}
		if _, err := tx.Exec("INSERT INTO t (v, n, b) VALUES (?, ?, ?)", fmt.Sprintf("r%02d-%03d", r, i), r*1000+i, b); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12; i++ {
		if _, err := tx.Exec("INSERT INTO kv (k, val) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET val = excluded.val",
			fmt.Sprintf("k%03d", w.rng.IntN(80)), w.blob(1500)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "UPDATE t SET n = n + 1, v = v || '+' WHERE id % 5 = ?", r%5)
	mustExec(t, db, "UPDATE t SET b = ? WHERE id = (SELECT min(id) FROM t WHERE b IS NOT NULL)", w.blob(9000))
	mustExec(t, db, "DELETE FROM t WHERE id % 7 = ? AND id < (SELECT max(id) FROM t) - 30", r%7)
	mustExec(t, db, "DELETE FROM kv WHERE k LIKE ?", fmt.Sprintf("k%%%d", r%10))
}

// dbState is a database's user-visible content: its schema and every row
// of every table, Litestream's own _litestream_* tables excluded.
type dbState struct {
	pages    int64 // PRAGMA page_count: the database's size
	pageSize int64
	schema   []string
	tables   map[string][]string // table -> sorted rows, each column as SQL quote() renders it
}

func (s dbState) rows() int {
	n := 0
	for _, r := range s.tables {
		n += len(r)
	}
	return n
}

func (s dbState) String() string {
	names := make([]string, 0, len(s.tables))
	for n := range s.tables {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s: %d rows", n, len(s.tables[n])))
	}
	return fmt.Sprintf("%d pages; %s", s.pages, strings.Join(parts, ", "))
}

const userObjects = `name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_litestream\_%' ESCAPE '\'`

func readState(t *testing.T, db *sql.DB) dbState {
	t.Helper()
	st := dbState{tables: map[string][]string{}}
	if err := db.QueryRow("PRAGMA page_count").Scan(&st.pages); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&st.pageSize); err != nil {
		t.Fatal(err)
	}
	st.schema = queryStrings(t, db, `SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_schema WHERE `+userObjects+` ORDER BY type, name`)
	for _, table := range queryStrings(t, db, `SELECT name FROM sqlite_schema WHERE type = 'table' AND `+userObjects+` ORDER BY name`) {
		cols := queryStrings(t, db, "SELECT name FROM pragma_table_info(?) ORDER BY cid", table)
		if len(cols) == 0 {
			t.Fatalf("table %s has no columns", table)
		}
		exprs := make([]string, len(cols))
		for i, c := range cols {
			exprs[i] = "quote(" + quoteIdent(c) + ")"
		}
		rows := queryStrings(t, db, "SELECT "+strings.Join(exprs, " || ',' || ")+" FROM "+quoteIdent(table))
		slices.Sort(rows)
		st.tables[table] = rows
	}
	return st
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func queryStrings(t *testing.T, db *sql.DB, q string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// diffState describes the first difference between got and want, or
// returns "" when they are equal.
func diffState(got, want dbState) string {
	if got.pages != want.pages || got.pageSize != want.pageSize {
		return fmt.Sprintf("the database has %d pages of %d bytes, want %d of %d", got.pages, got.pageSize, want.pages, want.pageSize)
	}
	if !slices.Equal(got.schema, want.schema) {
		return fmt.Sprintf("schema differs:\n got %q\nwant %q", got.schema, want.schema)
	}
	for name, w := range want.tables {
		g, ok := got.tables[name]
		if !ok {
			return fmt.Sprintf("table %s is missing", name)
		}
		for i := 0; i < min(len(g), len(w)); i++ {
			if g[i] != w[i] {
				return fmt.Sprintf("table %s: row %d (of %d, sorted) differs:\n got %s\nwant %s", name, i, len(w), clip(g[i]), clip(w[i]))
			}
		}
		if len(g) != len(w) {
			return fmt.Sprintf("table %s has %d rows, want %d", name, len(g), len(w))
		}
	}
	for name := range got.tables {
		if _, ok := want.tables[name]; !ok {
			return fmt.Sprintf("unexpected table %s", name)
		}
	}
	return ""
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// checkRestored opens a restored database, requires PRAGMA integrity_check
// to say exactly "ok", and compares its content with want.
func checkRestored(t *testing.T, driver, path string, want dbState, what string) {
	t.Helper()
	db := openRestored(t, driver, path)
	if res := queryStrings(t, db, "PRAGMA integrity_check"); !slices.Equal(res, []string{"ok"}) {
		t.Fatalf("%s: integrity_check of %s: %q", what, path, res)
	}
	got := readState(t, db)
	if d := diffState(got, want); d != "" {
		t.Fatalf("%s: restored content differs from the source: %s\n got: %v\nwant: %v", what, d, got, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// No page past the end (a VACUUM shrank the source) may be left over.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != want.pages*want.pageSize {
		t.Fatalf("%s: restored file is %d bytes, want %d pages of %d bytes", what, fi.Size(), want.pages, want.pageSize)
	}
}

// splitSQL splits a script of statements separated by semicolons.
func splitSQL(script string) []string {
	var out []string
	for _, q := range strings.Split(script, ";") {
		if q = strings.TrimSpace(q); q != "" {
			out = append(out, q)
		}
	}
	return out
}
