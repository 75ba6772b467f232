package capture

import (
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// conn is one SQLite connection used only for locking: walsync never runs a
// statement that writes a row, creates a table or changes the journal mode.
type conn struct {
	c *sqlite3.SQLiteConn
}

func openConn(path string, busy time.Duration) (*conn, error) {
	// mode=rw: never create a database that does not exist.
	dsn := (&url.URL{Scheme: "file", Path: path}).String() + "?mode=rw&_busy_timeout=" +
		strconv.FormatInt(busy.Milliseconds(), 10) + "&_cache_size=-64"
	c, err := (&sqlite3.SQLiteDriver{}).Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s with SQLite: %w", path, err)
	}
	sc := c.(*sqlite3.SQLiteConn)
	// Closing walsync's connections must not delete the application's WAL,
	// nor checkpoint it into the database file.
	if err := sc.SetFileControlInt("main", fcntlPersistWAL, 1); err != nil {
		sc.Close()
		return nil, fmt.Errorf("set SQLITE_FCNTL_PERSIST_WAL on %s: %w", path, err)
	}
	if err := noCheckpointOnClose(sc); err != nil {
		sc.Close()
		return nil, fmt.Errorf("set SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE on %s: %w", path, err)
	}
	return &conn{c: sc}, nil
}

// fcntlPersistWAL is SQLITE_FCNTL_PERSIST_WAL.
const fcntlPersistWAL = 10

func (c *conn) exec(q string) error {
	_, err := c.c.Exec(q, nil)
	return err
}

// queryInts runs q and returns the integer columns of its first row.
func (c *conn) queryInts(q string) ([]int64, error) {
	rows, err := c.c.Query(q, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(vals); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	out := make([]int64, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case int64:
			out[i] = v
		case nil:
		default:
			return nil, fmt.Errorf("%s: column %d is %T, not an integer", q, i, v)
		}
	}
	return out, nil
}

// beginRead starts a read transaction and makes it take its read mark now
// (BEGIN alone is deferred). Reading the schema's first page is enough.
func (c *conn) beginRead() error {
	if err := c.exec("BEGIN"); err != nil {
		return err
	}
	if _, err := c.queryInts("SELECT count(*) FROM (SELECT 1 FROM sqlite_schema LIMIT 1)"); err != nil {
		_ = c.exec("ROLLBACK")
		return err
	}
	return nil
}

// inTxn reports whether a transaction is open.
func (c *conn) inTxn() bool { return !c.c.AutoCommit() }

// end finishes whatever transaction is open; it wrote nothing either way.
func (c *conn) end() error {
	if !c.inTxn() {
		return nil
	}
	return c.exec("ROLLBACK")
}

func (c *conn) close() error {
	if c == nil || c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c = nil
	return err
}

// dbHeader is what walsync needs from a database file's 100-byte header.
type dbHeader struct {
	pageSize uint32
	pageN    uint32 // in-header database size; 0 if not valid
	wal      bool   // file format read/write versions are 2
}

// errNotSQLite marks a file that is not a SQLite database.
var errNotSQLite = errors.New("not a SQLite database")

func readDBHeader(f *os.File) (dbHeader, error) {
	b := make([]byte, 100)
	if _, err := f.ReadAt(b, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return dbHeader{}, errNotSQLite
		}
		return dbHeader{}, err
	}
	return parseDBHeader(b)
}

func parseDBHeader(b []byte) (dbHeader, error) {
	if string(b[:16]) != "SQLite format 3\x00" {
		return dbHeader{}, errNotSQLite
	}
	h := dbHeader{pageSize: uint32(binary.BigEndian.Uint16(b[16:]))}
	if h.pageSize == 1 {
		h.pageSize = 65536
	}
	h.wal = b[18] == 2 && b[19] == 2
	// The in-header size is valid only when version-valid-for matches the
	// change counter.
	if binary.BigEndian.Uint32(b[92:]) == binary.BigEndian.Uint32(b[24:]) {
		h.pageN = binary.BigEndian.Uint32(b[28:])
	}
	return h, nil
}
